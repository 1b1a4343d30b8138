/*
 * keten-bench - the broker under load, measured against the cryptography it
 * cannot avoid (issue "Performance", docs/performance.md).
 *
 * It makes a real network with libketen (one administrator, a signed
 * directory with an allow-all rule, node and broker identities), starts a
 * real keten-broker process in a temporary directory, and drives it over
 * real ZeroMQ/CurveZMQ sockets with N sending and M receiving nodes (one
 * thread and one CURVE client with its own node identity each). Envelopes
 * are sealed and signed BEFORE the timed phase, so the timed phase measures
 * the broker, not the generator: a sender sends prebuilt Submit frames.
 *
 * Each emulated node speaks protocol v2 as keten-node does
 * (docs/protocol.md): Hello first on its connection; every CheckpointFrame
 * is checked (the broker's log-key signature on the note, once per
 * checkpoint, and the consistency proof from the checkpoint before it);
 * every SubmitAck's LeafProof is checked against the root of a checkpoint
 * the node accepted (keten_logproof_verify) and its record against the
 * envelope sent (keten_logproof_record_is_envelope) - an ack counts as accepted only
 * then; a Deliver's proof is checked the same way; a receiver answers the
 * deliveries of one read burst with one signed ReceiptBatch
 * (keten_receipt_batch_new); a sender checks each ReceiptNotice's proof and
 * the receipt inside it (the head's signature once per distinct head).
 *
 * Figures per run (JSON and a table; medians with min-max over --runs):
 *   accepted signals/s     submits acknowledged with a proof that verified
 *                          (the ack is sent only after the audit record is
 *                          durably committed)
 *   deliveries/s, receipts/s (receipts as forwarded back to the senders)
 *   latency p50/p90/p99/p99.9 of submit -> durable ack, submit -> delivered
 *                          and submit -> receipt back at the sender
 *   broker CPU seconds (utime + stime of /proc/PID/stat over the run) and
 *   peak RSS (VmHWM of /proc/PID/status), also RssAnon/RssFile
 *   crypto floor           timed (thread CPU time) in this process over the
 *                          same signed bytes: one envelope verification, one
 *                          receipt signature verification, one checkpoint
 *                          signature (with the check of it); per message
 *                          the floor of protocol v1 (envelope + one receipt
 *                          per recipient) and of v2 (envelope + the receipt
 *                          batches and checkpoints of the run, per message);
 *                          broker CPU per message over each, and over one
 *                          envelope verification
 *   disk                   fdatasync latency of the store's file system
 *
 * Modes: --rate max (closed loop, --window submits in flight per sender),
 * --rate N (open loop, N signals/s in total, latency from the scheduled
 * send time), --rate half (a max run, then a run at half its rate, per
 * repetition). --backlog N queues N messages for nodes that never connect
 * while --idle-nodes K nodes stay connected, and reports the broker's
 * memory as the backlog grows.
 *
 * Exit code 0 when the runs completed (figures printed), 1 when something
 * failed (the broker did not start, messages were lost or refused), 2 for
 * usage errors. It never fails on time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "dirbuild.h"
#include "directory.h"
#include "envelope.h"
#include "identity.h"
#include "benchnet.h"
#include "checkpoint.h"
#include "keten.h"
#include "logproof.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "signal_json.h"
#include "util.h"

#define BENCH_LIFETIME_MS (24ull * 3600ull * 1000ull)
#define BENCH_NODES_MAX 4000
#define BENCH_NOTICE_BATCH 256
#define BENCH_RUNS_MAX 50
#define BENCH_PREBUILD_MAX 3000000u
/* Prebuilt envelopes are reused across runs while their created_at is well
 * inside the broker's clock window (5 minutes). */
#define BENCH_PREBUILD_REUSE_MS (180ull * 1000ull)
#define BENCH_DRAIN_MS 60000u
#define BENCH_READY_MS 30000u
#define BENCH_CP_KEEP 64 /* checkpoints a node keeps to check proofs against */
#define BENCH_FLOOR_SAMPLE 256
#define BENCH_FLOOR_MIN_NS 150000000ull
#define BENCH_FSYNC_SAMPLES 40
#define BENCH_POLL_MAX_NS 50000000ull
#define BENCH_BACKLOG_CHUNK 50000u
#define BENCH_PCTS 4
#define BENCH_NAME_WIDTH 28 /* columns of a metric's name in the tables */

static const double pct_values[BENCH_PCTS] = { 0.50, 0.90, 0.99, 0.999 };
static const char *const pct_names[BENCH_PCTS] = { "p50", "p90", "p99", "p99.9" };

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    const char *broker_path;
    const char *json_path;
    const char *store_dir;
    const char *attach_cmd;
    const char *broker_args[16];
    size_t n_broker_args;
    size_t size;
    size_t recipients;
    size_t senders;
    size_t receivers;
    double rate; /* signals/s in total; 0 = as fast as possible */
    bool rate_half;
    double duration;
    bool tcp;
    unsigned runs;
    unsigned window;
    unsigned credit;
    uint64_t backlog;
    size_t idle_nodes;
    size_t offline_nodes;
    uint64_t map_size;
    double prebuild_rate;
    int io_threads;
    bool keep;
} opts;

static const char usage_text[]
    = "Usage: keten-bench [OPTIONS]\n"
      "\n"
      "Start a real keten-broker in a temporary directory and drive it over CurveZMQ\n"
      "with N sending and M receiving nodes; print throughput, latency, the broker's\n"
      "CPU and memory, and the crypto floor (see docs/performance.md).\n"
      "\n"
      "  --broker PATH        keten-broker to run (default: $KETEN_BROKER, else the one\n"
      "                       next to this program in the build tree, else PATH)\n"
      "  --size BYTES         serialized signal size (default 1000: the 1 KiB bucket)\n"
      "  --recipients R       recipients per message (default 1; at most --receivers)\n"
      "  --senders N          sending nodes (default 4)\n"
      "  --receivers M        receiving nodes (default 4)\n"
      "  --rate max|half|N    as fast as possible (default), a max run then half its\n"
      "                       rate, or N signals/s in total (open loop)\n"
      "  --duration S         seconds of load per run (default 10)\n"
      "  --transport ipc|tcp  ipc:// in the temporary directory (default) or tcp://127.0.0.1\n"
      "  --runs K             repetitions; medians with min-max are printed (default 1)\n"
      "  --window W           submits in flight per sender with --rate max (default 256)\n"
      "  --credit C           deliveries in flight per receiver (default 256)\n"
      "  --backlog N          memory mode: queue N messages for --offline-nodes nodes that\n"
      "                       never connect, with --idle-nodes connected nodes\n"
      "  --idle-nodes K       connected nodes that only listen (default 0)\n"
      "  --offline-nodes F    recipients that never connect, --backlog mode (default 4)\n"
      "  --map-size BYTES     the broker's --map-size (default: the broker's own, or\n"
      "                       16 GiB in --backlog mode)\n"
      "  --store-dir DIR      where the temporary directory (and the store) is made\n"
      "                       (default $TMPDIR or /tmp)\n"
      "  --prebuild-rate N    with --rate max, envelopes prebuilt per second of\n"
      "                       --duration (default 16000)\n"
      "  --io-threads N       ZeroMQ I/O threads of the load generator (default 1)\n"
      "  --broker-arg ARG     pass ARG to 'keten-broker run' (repeatable)\n"
      "  --attach CMD         run CMD (sh -c) during each timed phase with\n"
      "                       KETEN_BROKER_PID set, then send it SIGINT (perf, strace)\n"
      "  --json FILE          also write the results as JSON to FILE ('-': stdout)\n"
      "  --keep               keep the temporary directory\n"
      "  --help               show this help\n";

/* ---- small helpers ------------------------------------------------------- */

/* Online cores, at most 64 (the prebuild threads). */
static long cpu_count(void)
{
    long n = benchnet_cpu_count();
    return n > 64 ? 64 : n;
}

/* ---- the network --------------------------------------------------------- */

typedef struct net {
    benchnet bn; /* root, anchor, directory, the broker's identity */
    keten_identity **senders, **receivers, **idle, **offline;
    size_t n_senders, n_receivers, n_idle, n_offline;
    const Keten__NodeCert *broker_cert;
} net;

static keten_err make_nodes(
    benchnet_draft *draft, const char *prefix, const char *role, size_t n, keten_identity ***out)
{
    *out = benchnet_xcalloc(n, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        char id[KETEN_NAME_MAX + 1];
        snprintf(id, sizeof id, "%s-%zu", prefix, i + 1);
        keten_err e = benchnet_draft_add(draft, id, role, &(*out)[i]);
        if (e != KETEN_OK) {
            return e;
        }
    }
    return KETEN_OK;
}

/* One administrator (threshold 1), the broker, and the nodes; anchor and
 * signed directory written into root. */
static keten_err net_make(net *nt, const opts *o)
{
    benchnet_draft *draft = NULL;
    keten_err e = benchnet_draft_new(&nt->bn, &draft);
    if (e != KETEN_OK) {
        return e;
    }
    nt->n_senders = o->senders;
    nt->n_receivers = o->receivers;
    nt->n_idle = o->idle_nodes;
    nt->n_offline = o->backlog > 0 ? o->offline_nodes : 0;
    if ((e = make_nodes(draft, "s", "municipality", nt->n_senders, &nt->senders)) != KETEN_OK
        || (e = make_nodes(draft, "r", "police", nt->n_receivers, &nt->receivers)) != KETEN_OK
        || (e = make_nodes(draft, "i", "housing", nt->n_idle, &nt->idle)) != KETEN_OK
        || (e = make_nodes(draft, "o", "tax", nt->n_offline, &nt->offline)) != KETEN_OK
        || (e = benchnet_draft_finish(draft, &nt->bn)) != KETEN_OK) {
        goto out;
    }
    nt->broker_cert = keten_directory_broker(nt->bn.dir);
    if (nt->broker_cert == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND, "the bench directory lists no broker");
    }
out:
    benchnet_draft_destroy(&draft);
    return e;
}

static void free_ids(keten_identity ***v, size_t n)
{
    if (*v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keten_identity_destroy(&(*v)[i]);
    }
    free(*v);
    *v = NULL;
}

static void net_free(net *nt)
{
    free_ids(&nt->senders, nt->n_senders);
    free_ids(&nt->receivers, nt->n_receivers);
    free_ids(&nt->idle, nt->n_idle);
    free_ids(&nt->offline, nt->n_offline);
    benchnet_free(&nt->bn);
}

/* ---- the broker process -------------------------------------------------- */

static volatile sig_atomic_t g_broker_pid = 0;

static void on_fatal_signal(int sig)
{
    if (benchnet_attach_pid > 0) {
        kill((pid_t)benchnet_attach_pid, SIGKILL);
    }
    if (g_broker_pid > 0) {
        kill((pid_t)g_broker_pid, SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct broker_proc {
    pid_t pid;
    char home[PATH_MAX];
    char log_path[PATH_MAX];
    char endpoint[PATH_MAX + 32];
} broker_proc;

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

/* A new home with the broker's key (unencrypted: tests and benchmarks) and a
 * fresh store; start the broker and wait until it is running. */
static keten_err broker_start(broker_proc *bp, const opts *o, const net *nt, unsigned run)
{
    char name[64];
    keten_err e;
    snprintf(name, sizeof name, "broker-%u", run);
    if ((e = benchnet_path_in(nt->bn.root, name, bp->home)) != KETEN_OK
        || (e = keten_mkdir(bp->home, 0700)) != KETEN_OK
        || (e = benchnet_path_in(bp->home, "broker.log", bp->log_path)) != KETEN_OK) {
        return e;
    }
    char key_path[PATH_MAX];
    if ((e = benchnet_path_in(bp->home, "identity.secret", key_path)) != KETEN_OK) {
        return e;
    }
    if (access(key_path, F_OK) != 0
        && (e = keten_identity_save(nt->bn.broker, key_path, NULL, 0)) != KETEN_OK) {
        return e;
    }
    if (o->tcp) {
        int port = free_tcp_port();
        if (port < 0) {
            return keten_err_set(KETEN_ERR_IO, "no free TCP port on 127.0.0.1");
        }
        snprintf(bp->endpoint, sizeof bp->endpoint, "tcp://127.0.0.1:%d", port);
    } else {
        if (snprintf(bp->endpoint, sizeof bp->endpoint, "ipc://%s/broker.ipc", bp->home)
            >= (int)sizeof bp->endpoint) {
            return keten_err_set(KETEN_ERR_INVALID, "ipc path in %s is too long", bp->home);
        }
    }
    char map_arg[32];
    snprintf(map_arg, sizeof map_arg, "%llu", (unsigned long long)o->map_size);
    const char *argv[BENCHNET_BROKER_ARGC + 2 + 16 + 1];
    size_t n = benchnet_broker_argv(argv, o->broker_path, bp->home, &nt->bn, bp->endpoint);
    if (o->map_size > 0) {
        argv[n++] = "--map-size";
        argv[n++] = map_arg;
    }
    for (size_t i = 0; i < o->n_broker_args; i++) {
        argv[n++] = o->broker_args[i];
    }
    argv[n] = NULL;
    int logfd = open(bp->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        return keten_err_set(KETEN_ERR_IO, "%s: %s", bp->log_path, strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return keten_err_set(KETEN_ERR_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(logfd, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        unsetenv("KETEN_PASSPHRASE");
        execv(o->broker_path, (char *const *)argv);
        fprintf(stderr, "keten-bench: cannot run %s: %s\n", o->broker_path, strerror(errno));
        _exit(127);
    }
    close(logfd);
    bp->pid = pid;
    g_broker_pid = pid;
    uint64_t deadline = benchnet_mono_ns() + (uint64_t)BENCH_READY_MS * 1000000ull;
    while (benchnet_mono_ns() < deadline) {
        if (benchnet_log_has(bp->log_path, "msg=\"broker running\"")) {
            return KETEN_OK;
        }
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            bp->pid = 0;
            g_broker_pid = 0;
            benchnet_show_log("broker", bp->log_path);
            return keten_err_set(KETEN_ERR_IO, "the broker exited at start (status %d)", status);
        }
        benchnet_sleep_ns(20000000ull);
    }
    benchnet_show_log("broker", bp->log_path);
    return keten_err_set(KETEN_ERR_IO, "the broker did not start within %u ms", BENCH_READY_MS);
}

/* SIGTERM, wait (10 s at most), then SIGKILL. Returns the exit status or -1. */
static int broker_stop(broker_proc *bp)
{
    if (bp->pid <= 0) {
        return -1;
    }
    kill(bp->pid, SIGTERM);
    int status = -1;
    uint64_t deadline = benchnet_mono_ns() + 10 * BENCHNET_NS;
    while (benchnet_mono_ns() < deadline) {
        pid_t r = waitpid(bp->pid, &status, WNOHANG);
        if (r == bp->pid) {
            bp->pid = 0;
            g_broker_pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        benchnet_sleep_ns(20000000ull);
    }
    kill(bp->pid, SIGKILL);
    (void)waitpid(bp->pid, &status, 0);
    bp->pid = 0;
    g_broker_pid = 0;
    return -1;
}

/* --attach: sh -c CMD with KETEN_BROKER_PID, started at the timed phase. */
static pid_t attach_start(const char *cmd, pid_t broker)
{
    if (cmd == NULL) {
        return 0;
    }
    char v[32];
    snprintf(v, sizeof v, "%d", (int)broker);
    setenv("KETEN_BROKER_PID", v, 1); /* before fork: the child only execs */
    return benchnet_attach_start(cmd, false);
}

/* ---- the prebuilt workload ----------------------------------------------- */

typedef struct blob {
    uint8_t *data;
    size_t len;
} blob;

typedef struct workload {
    size_t n; /* messages */
    size_t R; /* recipients per message */
    size_t n_senders;
    keten_identity **rcpt; /* the recipient pool (receivers or offline nodes) */
    size_t n_rcpt;
    bool receipts;
    uint8_t (*msg_id)[KETEN_MSG_ID_BYTES];
    uint8_t (*env_hash)[KETEN_HASH_BYTES]; /* SHA-256 of each serialized Envelope */
    blob *submit; /* [n]: serialized Frame{request_id = i + 1, submit} */
    size_t env_len; /* envelope bytes of message 0 */
    uint64_t built_ms;
    /* msg_id -> index */
    uint32_t *table;
    size_t mask;
    /* the signed strings the broker verifies, for the crypto floor: the
     * envelope's, and the head of a receipt batch (of one leaf) */
    size_t n_floor;
    blob *floor_env_msg, *floor_rc_msg;
    uint8_t (*floor_env_sig)[KETEN_SIG_BYTES], (*floor_rc_sig)[KETEN_SIG_BYTES];
    const uint8_t **floor_env_pk, **floor_rc_pk;
} workload;

/* Sender of message i, and recipient j of it (an index into rcpt). */
static size_t msg_sender(const workload *w, size_t i)
{
    return i % w->n_senders;
}

static size_t msg_rcpt(const workload *w, size_t i, size_t j)
{
    size_t base = (i / w->n_senders + i % w->n_senders) % w->n_rcpt;
    return (base + j) % w->n_rcpt;
}

/* Which j is recipient r of message i (or SIZE_MAX). */
static size_t msg_rcpt_slot(const workload *w, size_t i, size_t r)
{
    size_t base = (i / w->n_senders + i % w->n_senders) % w->n_rcpt;
    size_t j = (r + w->n_rcpt - base) % w->n_rcpt;
    return j < w->R ? j : SIZE_MAX;
}

static size_t wl_lookup(const workload *w, const uint8_t *msg_id)
{
    for (size_t h = (size_t)benchnet_id_key(msg_id) & w->mask;; h = (h + 1) & w->mask) {
        uint32_t v = w->table[h];
        if (v == 0) {
            return SIZE_MAX;
        }
        if (memcmp(w->msg_id[v - 1], msg_id, KETEN_MSG_ID_BYTES) == 0) {
            return v - 1;
        }
    }
}

static void wl_free(workload *w)
{
    if (w->submit != NULL) {
        for (size_t i = 0; i < w->n; i++) {
            free(w->submit[i].data);
        }
    }
    for (size_t i = 0; i < w->n_floor; i++) {
        free(w->floor_env_msg[i].data);
        free(w->floor_rc_msg[i].data);
    }
    free(w->floor_env_msg);
    free(w->floor_rc_msg);
    free(w->floor_env_sig);
    free(w->floor_rc_sig);
    free(w->floor_env_pk);
    free(w->floor_rc_pk);
    free(w->submit);
    free(w->env_hash);
    free(w->msg_id);
    free(w->table);
    memset(w, 0, sizeof *w);
}

/* A Signal whose serialized form is exactly `size` bytes (or the smallest
 * possible when size is below that). */
static keten_err make_payload(size_t size, uint8_t **out, size_t *out_len)
{
    uint8_t *fill = benchnet_xcalloc(size + 16, 1);
    randombytes_buf(fill, size + 16);
    Keten__Attachment at = KETEN__ATTACHMENT__INIT;
    Keten__Attachment *atp[1] = { &at };
    at.name = (char *)"fill.bin";
    at.media_type = (char *)"application/octet-stream";
    Keten__Signal s = KETEN__SIGNAL__INIT;
    s.type = (char *)BENCHNET_CATEGORY;
    s.purpose = (char *)BENCHNET_PURPOSE;
    s.summary = (char *)"keten-bench load";
    s.nature = (char *)"hard";
    s.handling = (char *)"TLP:AMBER";
    s.n_attachments = 1;
    s.attachments = atp;
    size_t data = 0;
    keten_err e = KETEN_OK;
    for (int round = 0; round < 6; round++) {
        at.data.data = fill;
        at.data.len = data;
        size_t len = protobuf_c_message_get_packed_size(&s.base);
        if (len == size || (len > size && data == 0)) {
            break;
        }
        data = len < size ? data + (size - len) : data - (len - size > data ? data : len - size);
    }
    at.data.len = data;
    e = keten_signal_json_pack(&s, out, out_len);
    free(fill);
    return e;
}

typedef struct build_job {
    workload *w;
    const net *nt;
    const uint8_t *payload;
    size_t payload_len;
    size_t from, to;
    uint64_t now;
    keten_err e;
    char detail[512];
} build_job;

static keten_err pack_frame(Keten__Frame *f, blob *out)
{
    return keten_pb_pack(&f->base, &out->data, &out->len);
}

static keten_err build_one(build_job *j, size_t i)
{
    workload *w = j->w;
    const net *nt = j->nt;
    const keten_identity *sender = nt->senders[msg_sender(w, i)];
    const char *to[KETEN_MAX_RECIPIENTS];
    for (size_t k = 0; k < w->R; k++) {
        to[k] = w->rcpt[msg_rcpt(w, i, k)]->id;
    }
    keten_envelope_seal_params sp = {
        .kind = KETEN__KIND__KIND_SIGNAL,
        .category = BENCHNET_CATEGORY,
        .purpose = BENCHNET_PURPOSE,
        .created_at = j->now,
        .expires_at = j->now + BENCH_LIFETIME_MS,
    };
    uint8_t *env = NULL;
    size_t env_len = 0;
    keten_err e = keten_envelope_seal(sender, nt->bn.dir, to, w->R, &sp, j->payload, j->payload_len,
        w->msg_id[i], &env, &env_len);
    if (e != KETEN_OK) {
        return e;
    }
    crypto_hash_sha256(w->env_hash[i], env, env_len);
    if (i == 0) {
        w->env_len = env_len;
    }
    Keten__Submit sub = KETEN__SUBMIT__INIT;
    sub.envelope.data = env;
    sub.envelope.len = env_len;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = i + 1;
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &sub;
    e = pack_frame(&f, &w->submit[i]);
    if (e == KETEN_OK && i < w->n_floor) {
        /* "keten/envelope/v1" || header || SHA-256(ciphertext), as the broker checks it */
        Keten__Envelope *pe = NULL;
        e = KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &pe);
        if (e == KETEN_OK) {
            size_t ll = sizeof KETEN_LABEL_ENVELOPE - 1;
            blob *m = &w->floor_env_msg[i];
            m->len = ll + pe->header.len + KETEN_HASH_BYTES;
            m->data = benchnet_xcalloc(m->len, 1);
            memcpy(m->data, KETEN_LABEL_ENVELOPE, ll);
            memcpy(m->data + ll, pe->header.data, pe->header.len);
            crypto_hash_sha256(
                m->data + ll + pe->header.len, pe->ciphertext.data, pe->ciphertext.len);
            memcpy(w->floor_env_sig[i], pe->signature.data, KETEN_SIG_BYTES);
            w->floor_env_pk[i] = sender->sign_pk;
        }
        keten_pb_free((ProtobufCMessage **)(void *)&pe);
    }
    free(env);
    if (e == KETEN_OK && w->receipts && i < w->n_floor) {
        /* The head its first recipient signs for a batch holding only this
         * message: "keten/receipts/v2" || head, as the broker checks it. */
        const keten_identity *rc = w->rcpt[msg_rcpt(w, i, 0)];
        const Keten__NodeCert *cert = keten_directory_find_id(nt->bn.dir, rc->id);
        keten_receipt_batch *rb = NULL;
        keten_receipt_item item
            = { .outcome = KETEN__OUTCOME__OUTCOME_STORED, .reason = KETEN__REASON__REASON_NONE };
        memcpy(item.msg_id, w->msg_id[i], KETEN_MSG_ID_BYTES);
        memcpy(item.envelope_hash, w->env_hash[i], KETEN_HASH_BYTES);
        if (cert == NULL) {
            return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "%s is not in the directory", rc->id);
        }
        e = keten_receipt_batch_new(rc, BENCHNET_NETWORK, cert->serial, j->now, &item, 1, &rb);
        if (e == KETEN_OK) {
            size_t ll = sizeof KETEN_LABEL_RECEIPTS - 1;
            blob *m = &w->floor_rc_msg[i];
            m->len = ll + rb->head_len;
            m->data = benchnet_xcalloc(m->len, 1);
            memcpy(m->data, KETEN_LABEL_RECEIPTS, ll);
            memcpy(m->data + ll, rb->head, rb->head_len);
            memcpy(w->floor_rc_sig[i], rb->signature, KETEN_SIG_BYTES);
            w->floor_rc_pk[i] = rc->sign_pk;
        }
        keten_receipt_batch_destroy(&rb);
    }
    return e;
}

static void *build_thread(void *arg)
{
    build_job *j = arg;
    for (size_t i = j->from; i < j->to && j->e == KETEN_OK; i++) {
        j->e = build_one(j, i);
        if (j->e != KETEN_OK) {
            snprintf(j->detail, sizeof j->detail, "%s", keten_err_detail());
        }
    }
    return NULL;
}

/* Seal n envelopes on every core (and, for the floor, sign a receipt head
 * for the first ones). */
static keten_err wl_build(workload *w, const net *nt, const opts *o, size_t n,
    keten_identity **rcpt, size_t n_rcpt, bool receipts)
{
    wl_free(w);
    w->n = n;
    w->R = o->recipients;
    w->n_senders = nt->n_senders;
    w->rcpt = rcpt;
    w->n_rcpt = n_rcpt;
    w->receipts = receipts;
    w->msg_id = benchnet_xcalloc(n, sizeof *w->msg_id);
    w->env_hash = benchnet_xcalloc(n, sizeof *w->env_hash);
    w->submit = benchnet_xcalloc(n, sizeof *w->submit);
    w->n_floor = n < BENCH_FLOOR_SAMPLE ? n : BENCH_FLOOR_SAMPLE;
    if (!receipts) {
        w->n_floor = 0;
    }
    w->floor_env_msg = benchnet_xcalloc(w->n_floor, sizeof *w->floor_env_msg);
    w->floor_rc_msg = benchnet_xcalloc(w->n_floor, sizeof *w->floor_rc_msg);
    w->floor_env_sig = benchnet_xcalloc(w->n_floor, sizeof *w->floor_env_sig);
    w->floor_rc_sig = benchnet_xcalloc(w->n_floor, sizeof *w->floor_rc_sig);
    w->floor_env_pk = benchnet_xcalloc(w->n_floor, sizeof *w->floor_env_pk);
    w->floor_rc_pk = benchnet_xcalloc(w->n_floor, sizeof *w->floor_rc_pk);
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    keten_err e = make_payload(o->size, &payload, &payload_len);
    if (e != KETEN_OK) {
        return e;
    }
    size_t nt_threads = (size_t)cpu_count();
    build_job *jobs = benchnet_xcalloc(nt_threads, sizeof *jobs);
    pthread_t *th = benchnet_xcalloc(nt_threads, sizeof *th);
    uint64_t now = keten_now_ms();
    for (size_t t = 0; t < nt_threads; t++) {
        jobs[t] = (build_job) { .w = w,
            .nt = nt,
            .payload = payload,
            .payload_len = payload_len,
            .from = n * t / nt_threads,
            .to = n * (t + 1) / nt_threads,
            .now = now };
        if (pthread_create(&th[t], NULL, build_thread, &jobs[t]) != 0) {
            jobs[t].e = keten_err_set(KETEN_ERR_IO, "cannot start a build thread");
            th[t] = 0;
        }
    }
    e = KETEN_OK;
    for (size_t t = 0; t < nt_threads; t++) {
        if (th[t] != 0) {
            pthread_join(th[t], NULL);
        }
        if (jobs[t].e != KETEN_OK && e == KETEN_OK) {
            e = keten_err_set(jobs[t].e, "%s", jobs[t].detail);
        }
    }
    free(th);
    free(jobs);
    free(payload);
    if (e != KETEN_OK) {
        return e;
    }
    size_t cap = 1;
    while (cap < 2 * n) {
        cap <<= 1;
    }
    w->table = benchnet_xcalloc(cap, sizeof *w->table);
    w->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)benchnet_id_key(w->msg_id[i]) & w->mask;
        while (w->table[h] != 0) {
            h = (h + 1) & w->mask;
        }
        w->table[h] = (uint32_t)(i + 1);
    }
    w->built_ms = keten_mono_ms();
    return KETEN_OK;
}

/* ---- the crypto floor and the disk --------------------------------------- */

/* env_us: one envelope signature verification; receipt_us: one receipt
 * signature verification (a receipt batch's head); checkpoint_us: one
 * checkpoint signature by the log key plus the broker's check of it.
 * per_msg_us: the floor of protocol v1, envelope + R receipts per message
 * (still measured, for comparison); per_msg_v2_us: envelope + the receipt
 * batches and checkpoints the broker handled in the run, per message (set
 * after the run). */
typedef struct floor_result {
    double env_us, receipt_us, per_msg_us;
    double checkpoint_us, per_msg_v2_us;
} floor_result;

static double time_verifies(const blob *msg, const uint8_t (*sig)[KETEN_SIG_BYTES],
    const uint8_t **pk, size_t n, size_t *bad)
{
    uint64_t start = benchnet_thread_cpu_ns(), ops = 0;
    do {
        for (size_t i = 0; i < n; i++) {
            if (crypto_sign_verify_detached(sig[i], msg[i].data, msg[i].len, pk[i]) != 0) {
                (*bad)++;
            }
        }
        ops += n;
    } while (benchnet_thread_cpu_ns() - start < BENCH_FLOOR_MIN_NS);
    return (double)(benchnet_thread_cpu_ns() - start) / 1e3 / (double)ops;
}

/* Ed25519 signature of a checkpoint body with the log key, and the check of
 * it that the broker makes of its own signature. */
static double time_checkpoint(
    const uint8_t *body, size_t len, const keten_identity *broker, size_t *bad)
{
    uint64_t start = benchnet_thread_cpu_ns(), ops = 0;
    uint8_t sig[KETEN_SIG_BYTES];
    do {
        if (crypto_sign_detached(sig, NULL, body, len, broker->log_sk) != 0
            || crypto_sign_verify_detached(sig, body, len, broker->log_pk) != 0) {
            (*bad)++;
        }
        ops++;
    } while (benchnet_thread_cpu_ns() - start < BENCH_FLOOR_MIN_NS);
    return (double)(benchnet_thread_cpu_ns() - start) / 1e3 / (double)ops;
}

/* Bare crypto_sign_verify_detached over the bytes the broker verifies, and
 * the checkpoint signature: median of 3 timings of each. */
static floor_result measure_floor(const workload *w, const net *nt, size_t *bad)
{
    floor_result fr = { 0, 0, 0, 0, 0 };
    if (w->n_floor == 0) {
        return fr;
    }
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", BENCHNET_NETWORK);
    cp.size = 1000000;
    randombytes_buf(cp.root, sizeof cp.root);
    cp.dir_version = keten_directory_version(nt->bn.dir);
    memcpy(cp.dir_hash, keten_directory_hash(nt->bn.dir), KETEN_HASH_BYTES);
    char *body = NULL;
    if (keten_checkpoint_body(&cp, &body) != KETEN_OK) {
        (*bad)++;
        keten_err_clear();
        return fr;
    }
    double env[3], rc[3], ck[3];
    for (int k = 0; k < 3; k++) {
        env[k] = time_verifies(w->floor_env_msg,
            (const uint8_t(*)[KETEN_SIG_BYTES])w->floor_env_sig, w->floor_env_pk, w->n_floor, bad);
        rc[k] = time_verifies(w->floor_rc_msg, (const uint8_t(*)[KETEN_SIG_BYTES])w->floor_rc_sig,
            w->floor_rc_pk, w->n_floor, bad);
        ck[k] = time_checkpoint((const uint8_t *)body, strlen(body), nt->bn.broker, bad);
    }
    free(body);
    qsort(env, 3, sizeof env[0], benchnet_cmp_double);
    qsort(rc, 3, sizeof rc[0], benchnet_cmp_double);
    qsort(ck, 3, sizeof ck[0], benchnet_cmp_double);
    fr.env_us = env[1];
    fr.receipt_us = rc[1];
    fr.checkpoint_us = ck[1];
    fr.per_msg_us = fr.env_us + (double)w->R * fr.receipt_us;
    return fr;
}

typedef struct fsync_result {
    double p50_ms, p99_ms;
} fsync_result;

/* fdatasync of a 4 KiB write, as an LMDB commit does twice (data, then meta). */
static fsync_result measure_fsync(const char *dir)
{
    fsync_result r = { -1, -1 };
    char path[PATH_MAX];
    if (benchnet_path_in(dir, "fsync-probe", path) != KETEN_OK) {
        return r;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return r;
    }
    uint8_t page[4096];
    memset(page, 0x5a, sizeof page);
    uint64_t lat[BENCH_FSYNC_SAMPLES];
    size_t n = 0;
    for (size_t i = 0; i < BENCH_FSYNC_SAMPLES; i++) {
        if (pwrite(fd, page, sizeof page, (off_t)((i % 16) * sizeof page))
            != (ssize_t)sizeof page) {
            break;
        }
        uint64_t a = benchnet_mono_ns();
        if (fdatasync(fd) != 0) {
            break;
        }
        lat[n++] = benchnet_mono_ns() - a;
    }
    close(fd);
    unlink(path);
    qsort(lat, n, sizeof lat[0], benchnet_cmp_u64);
    r.p50_ms = benchnet_pct_ms(lat, n, 0.5);
    r.p99_ms = benchnet_pct_ms(lat, n, 0.99);
    return r;
}

/* ---- protobuf scanning (the generator must stay cheap) ------------------- */

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            return true;
        }
    }
    return false;
}

/* The first occurrence of field `want`: a varint (*v) or a length-delimited
 * value (*data, *len). */
static bool pb_field(
    const uint8_t *buf, size_t len, unsigned want, uint64_t *v, const uint8_t **data, size_t *dlen)
{
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        uint64_t key = 0, x = 0;
        if (!pb_varint(&p, end, &key)) {
            return false;
        }
        unsigned wire = (unsigned)(key & 7);
        unsigned field = (unsigned)(key >> 3);
        if (wire == 0) {
            if (!pb_varint(&p, end, &x)) {
                return false;
            }
            if (field == want) {
                *v = x;
                return true;
            }
        } else if (wire == 2) {
            if (!pb_varint(&p, end, &x) || x > (uint64_t)(end - p)) {
                return false;
            }
            if (field == want) {
                *data = p;
                *dlen = (size_t)x;
                return true;
            }
            p += x;
        } else if (wire == 1 && end - p >= 8) {
            p += 8;
        } else if (wire == 5 && end - p >= 4) {
            p += 4;
        } else {
            return false;
        }
    }
    return false;
}

static bool pb_bytes(const uint8_t *buf, size_t len, unsigned want, const uint8_t **d, size_t *n)
{
    uint64_t v = 0;
    *d = NULL;
    *n = 0;
    return pb_field(buf, len, want, &v, d, n) && *d != NULL;
}

/* Frame body numbers (proto/keten.proto): idle nodes only look for this one. */
enum {
    F_DIRECTORY_PUSH = 8,
};

/* Which body a frame carries (its field number) and the body bytes. */
static unsigned frame_body(const uint8_t *buf, size_t len, const uint8_t **body, size_t *blen)
{
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        uint64_t key = 0, x = 0;
        if (!pb_varint(&p, end, &key)) {
            return 0;
        }
        unsigned wire = (unsigned)(key & 7);
        if (wire == 0) {
            if (!pb_varint(&p, end, &x)) {
                return 0;
            }
        } else if (wire == 2) {
            if (!pb_varint(&p, end, &x) || x > (uint64_t)(end - p)) {
                return 0;
            }
            *body = p;
            *blen = (size_t)x;
            return (unsigned)(key >> 3);
        } else {
            return 0;
        }
    }
    return 0;
}

/* ---- one run --------------------------------------------------------------- */

enum phase { PH_CONNECT = 0, PH_GO = 1, PH_QUIT = 2 };

typedef struct run_state run_state;

/* The checkpoints a node accepted (the last BENCH_CP_KEEP): the latest is
 * its reference; a proof is checked against the root of the one whose tree
 * size it names. */
typedef struct cp_keep {
    uint64_t size[BENCH_CP_KEEP];
    keten_hash root[BENCH_CP_KEEP];
    size_t n, next;
    bool have_ref;
    uint64_t ref_size;
} cp_keep;

/* The receipt head a sender verified last for one recipient: a notice
 * whose receipt carries the same head bytes needs only its leaf checked. */
typedef struct head_cache {
    uint8_t *bytes;
    size_t len;
    Keten__ReceiptBatchHead *head;
} head_cache;

typedef struct node_thr {
    run_state *rs;
    bool sender;
    size_t idx; /* sender index, or recipient index in the workload's pool */
    const keten_identity *id;
    uint64_t serial; /* serial of its certificate (receipt heads name it) */
    pthread_t th;
    bool started;
    cp_keep cp;
    /* stats (read after join) */
    uint64_t acks_checked, acks_bad, errors, checkpoints, duplicates, unknown;
    uint64_t checkpoints_bad, hellos_again, proofs_unknown_cp, acks_resent;
    uint64_t deliveries_bad, notices_bad, heads_verified, receipt_batches, receipt_leaves;
    int first_error_reason;
    char first_error[160];
    char first_alarm[240];
    bool exhausted;
    keten_err e;
    char detail[256];
    /* Forwarded receipts to confirm (NoticeAck), as the node does. */
    uint64_t notice_leaf[BENCH_NOTICE_BATCH];
    size_t n_notice;
    /* Receivers: the receipt leaves of the current read burst, and the
     * credit of deliveries dropped (proof refused or unknown). */
    keten_receipt_item *items;
    size_t n_items;
    uint32_t credit_back;
    /* Senders: the last verified receipt head per recipient of the pool. */
    head_cache *heads;
} node_thr;

struct run_state {
    const opts *o;
    const net *nt;
    const workload *w;
    void *ctx;
    const char *endpoint;
    double rate; /* total signals/s, 0 = max */
    size_t limit; /* messages that may be sent in this run (<= w->n) */
    uint64_t t0_ns, t_end_ns;
    atomic_int phase;
    atomic_size_t ready, failed;
    uint64_t *sent_ns, *ack_ns, *dlv_ns, *rcp_ns;
    /* n_acked: acks whose proof held; n_errors: submits the broker refused. */
    atomic_uint_fast64_t n_sent, n_acked, n_delivered, n_receipted, n_errors;
    /* Tree sizes of the checkpoints seen by any node (a bit each). */
    atomic_uint_fast64_t *cp_bits;
    uint64_t cp_bits_n;
};

static keten_err node_socket(run_state *rs, const keten_identity *id, void **out)
{
    void *s = zmq_socket(rs->ctx, ZMQ_DEALER);
    int linger = 0, hwm = 100000;
    int64_t maxmsg = (int64_t)KETEN_FRAME_MAX;
    if (s == NULL
        || zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, rs->nt->broker_cert->transport_pk.data,
               KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, id->transport_pk, KETEN_CURVE_KEY_BYTES) != 0
        || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, id->transport_sk, KETEN_CURVE_KEY_BYTES) != 0
        || zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0
        || zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0
        || zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0
        || zmq_connect(s, rs->endpoint) != 0) {
        keten_err e = keten_err_set(
            KETEN_ERR_IO, "node socket to %s: %s", rs->endpoint, zmq_strerror(zmq_errno()));
        if (s != NULL) {
            zmq_close(s);
        }
        return e;
    }
    *out = s;
    return KETEN_OK;
}

static keten_err send_msg(void *sock, Keten__Frame *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&f->base, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    int rc = zmq_send(sock, buf, len, 0);
    free(buf);
    return rc < 0 ? keten_err_set(KETEN_ERR_IO, "send: %s", zmq_strerror(zmq_errno())) : KETEN_OK;
}

/* Confirm the forwarded receipts taken since the last call (NoticeAck), as
 * a node does once it has recorded them; the broker keeps and resends a
 * notice until it is confirmed. */
static keten_err flush_notices(node_thr *t, void *sock)
{
    if (t->n_notice == 0) {
        return KETEN_OK;
    }
    Keten__NoticeAck na = KETEN__NOTICE_ACK__INIT;
    na.n_leaf_indexes = t->n_notice;
    na.leaf_indexes = t->notice_leaf;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_NOTICE_ACK;
    f.notice_ack = &na;
    t->n_notice = 0;
    return send_msg(sock, &f);
}

/* Hello{tree_size}: the size of the node's reference checkpoint (0: none). */
static keten_err send_hello(void *sock, uint64_t tree_size)
{
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = tree_size;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_HELLO;
    f.hello = &h;
    return send_msg(sock, &f);
}

static keten_err send_credit(void *sock, uint32_t credit)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = credit;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    return send_msg(sock, &f);
}

/* Hello (a new node: no checkpoint yet), credit (receivers), then a
 * directory request whose answer proves that the broker took this node's
 * connection. */
static keten_err node_hello(run_state *rs, void *sock, uint32_t credit)
{
    keten_err e = send_hello(sock, 0);
    if (e == KETEN_OK) {
        e = send_credit(sock, credit);
    }
    if (e != KETEN_OK) {
        return e;
    }
    Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
    dr.after_version = keten_directory_version(rs->nt->bn.dir);
    Keten__Frame g = KETEN__FRAME__INIT;
    g.request_id = UINT64_MAX;
    g.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    g.directory_request = &dr;
    return send_msg(sock, &g);
}

/* Wait for readability of a ZeroMQ socket with ns precision (ZMQ_FD is
 * edge-triggered: ZMQ_EVENTS is checked first). */
static void wait_readable(void *sock, uint64_t ns)
{
    int events = 0;
    size_t sz = sizeof events;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &sz) == 0 && (events & ZMQ_POLLIN)) {
        return;
    }
    int fd = -1;
    sz = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz) != 0) {
        benchnet_sleep_ns(ns);
        return;
    }
    struct pollfd pfd = { fd, POLLIN, 0 };
    struct timespec ts = { (time_t)(ns / BENCHNET_NS), (long)(ns % BENCHNET_NS) };
    (void)ppoll(&pfd, 1, &ts, NULL);
}

static void note_error(node_thr *t, const Keten__Error *er)
{
    t->errors++;
    if (t->errors == 1) {
        t->first_error_reason = (int)er->reason;
        snprintf(t->first_error, sizeof t->first_error, "%s", er->detail != NULL ? er->detail : "");
    }
}

/* What keten-node would raise as an alarm (a proof or checkpoint that does
 * not verify): counted, the first one kept with libketen's detail. */
static void note_alarm(node_thr *t, uint64_t *counter, const char *what)
{
    (*counter)++;
    if (t->first_alarm[0] == '\0') {
        snprintf(t->first_alarm, sizeof t->first_alarm, "%s %s: %s", t->id->id, what,
            keten_err_detail());
    }
    keten_err_clear();
}

/* ---- checkpoints and proofs, as keten-node checks them -------------------- */

static const uint8_t *cp_root(const cp_keep *c, uint64_t size)
{
    for (size_t k = 0; k < c->n; k++) {
        if (c->size[k] == size) {
            return c->root[k];
        }
    }
    return NULL;
}

static void cp_mark(run_state *rs, uint64_t size)
{
    if (rs->cp_bits != NULL && size < rs->cp_bits_n) {
        atomic_fetch_or(&rs->cp_bits[size / 64], (uint_fast64_t)1 << (size % 64));
    }
}

/* A CheckpointFrame: the note's signature by the broker's log key and its
 * origin, the consistency proof from old_size (a size this node keeps, or 0
 * when it has no checkpoint yet), never behind the reference, never a second
 * root for a size. 0: accepted (the new reference); 1: old_size is not one
 * this node keeps (it says Hello again); -1: refused. */
static int cp_accept(node_thr *t, const Keten__CheckpointFrame *cf)
{
    run_state *rs = t->rs;
    cp_keep *c = &t->cp;
    const Keten__NodeCert *bc = rs->nt->broker_cert;
    keten_checkpoint cp;
    keten_hash proof[KETEN_MERKLE_MAX_PROOF];
    t->checkpoints++;
    if (cf->note == NULL
        || keten_checkpoint_open(cf->note, strlen(cf->note), bc->id, bc->log_pk.data, &cp)
            != KETEN_OK) {
        note_alarm(t, &t->checkpoints_bad, "checkpoint note");
        return -1;
    }
    if (strncmp(cp.origin, "keten/", 6) != 0 || strcmp(cp.origin + 6, BENCHNET_NETWORK) != 0) {
        (void)keten_err_set(KETEN_ERR_WRONG_NETWORK, "origin %s", cp.origin);
        note_alarm(t, &t->checkpoints_bad, "checkpoint origin");
        return -1;
    }
    if (cf->n_consistency > KETEN_MERKLE_MAX_PROOF) {
        (void)keten_err_set(KETEN_ERR_MALFORMED, "%zu consistency hashes", cf->n_consistency);
        note_alarm(t, &t->checkpoints_bad, "checkpoint proof");
        return -1;
    }
    for (size_t k = 0; k < cf->n_consistency; k++) {
        if (cf->consistency[k].len != KETEN_HASH_BYTES) {
            (void)keten_err_set(KETEN_ERR_MALFORMED, "consistency hash %zu is %zu bytes", k,
                cf->consistency[k].len);
            note_alarm(t, &t->checkpoints_bad, "checkpoint proof");
            return -1;
        }
        memcpy(proof[k], cf->consistency[k].data, KETEN_HASH_BYTES);
    }
    if (cf->old_size == 0) {
        if (c->have_ref) {
            t->hellos_again++;
            return 1;
        }
        if (cf->n_consistency != 0) {
            (void)keten_err_set(KETEN_ERR_MALFORMED, "a consistency proof from size 0");
            note_alarm(t, &t->checkpoints_bad, "checkpoint proof");
            return -1;
        }
    } else {
        const uint8_t *old = cp_root(c, cf->old_size);
        if (old == NULL) {
            t->hellos_again++;
            return 1;
        }
        if (keten_merkle_verify_consistency(
                cf->old_size, cp.size, old, cp.root, (const keten_hash *)proof, cf->n_consistency)
            != KETEN_OK) {
            note_alarm(t, &t->checkpoints_bad, "checkpoint consistency");
            return -1;
        }
    }
    if (c->have_ref && cp.size < c->ref_size) {
        (void)keten_err_set(KETEN_ERR_INCONSISTENT, "size %llu is behind the reference %llu",
            (unsigned long long)cp.size, (unsigned long long)c->ref_size);
        note_alarm(t, &t->checkpoints_bad, "checkpoint");
        return -1;
    }
    const uint8_t *same = cp_root(c, cp.size);
    if (same != NULL) {
        if (sodium_memcmp(same, cp.root, KETEN_HASH_BYTES) != 0) {
            (void)keten_err_set(
                KETEN_ERR_INCONSISTENT, "a second root for size %llu", (unsigned long long)cp.size);
            note_alarm(t, &t->checkpoints_bad, "checkpoint");
            return -1;
        }
    } else {
        c->size[c->next] = cp.size;
        memcpy(c->root[c->next], cp.root, KETEN_HASH_BYTES);
        c->next = (c->next + 1) % BENCH_CP_KEEP;
        if (c->n < BENCH_CP_KEEP) {
            c->n++;
        }
    }
    c->have_ref = true;
    c->ref_size = cp.size;
    cp_mark(rs, cp.size);
    return 0;
}

static void on_checkpoint(node_thr *t, void *sock, const Keten__CheckpointFrame *cf)
{
    if (cp_accept(t, cf) == 1) {
        (void)send_hello(sock, t->cp.have_ref ? t->cp.ref_size : 0);
    }
}

/* A LeafProof against a kept checkpoint. 0: verified (*rec_out); 1: its tree
 * size is not one this node keeps; -1: refused. */
static int proof_check(node_thr *t, const Keten__LeafProof *p, Keten__AuditRecord **rec_out)
{
    *rec_out = NULL;
    if (p == NULL) {
        (void)keten_err_set(KETEN_ERR_MALFORMED, "the frame carries no proof");
        return -1;
    }
    const uint8_t *root = cp_root(&t->cp, p->tree_size);
    if (root == NULL) {
        t->proofs_unknown_cp++;
        return 1;
    }
    return keten_logproof_verify(p, root, rec_out) == KETEN_OK ? 0 : -1;
}

/* The serialized Envelope inside message i's prebuilt Submit frame. */
static bool submit_envelope(const workload *w, size_t i, const uint8_t **env, size_t *env_len)
{
    const uint8_t *sub = NULL;
    size_t sub_len = 0;
    return pb_bytes(w->submit[i].data, w->submit[i].len, 2, &sub, &sub_len)
        && pb_bytes(sub, sub_len, 1, env, env_len);
}

/* A SubmitAck (or Error DUPLICATE with a proof): accepted only when the
 * proof verifies against a kept checkpoint and its record is the submitted
 * record of the envelope this node sent under that request id. */
static void sender_ack(
    node_thr *t, void *sock, uint64_t rid, const Keten__LeafProof *proof, uint64_t *acked)
{
    run_state *rs = t->rs;
    const workload *w = rs->w;
    Keten__AuditRecord *rec = NULL;
    Keten__Envelope *pe = NULL;
    const uint8_t *env = NULL;
    size_t env_len = 0;
    int pc = proof_check(t, proof, &rec);
    if (pc == 1) {
        /* Not accepted; sent again, it is answered with a fresh proof. */
        if (rid >= 1 && rid <= w->n && msg_sender(w, rid - 1) == t->idx) {
            (void)zmq_send(sock, w->submit[rid - 1].data, w->submit[rid - 1].len, 0);
            t->acks_resent++;
        }
        return;
    }
    if (pc < 0) {
        note_alarm(t, &t->acks_bad, "ack proof");
        return;
    }
    size_t i = rec->msg_id.len == KETEN_MSG_ID_BYTES ? wl_lookup(w, rec->msg_id.data) : SIZE_MAX;
    if (i == SIZE_MAX || msg_sender(w, i) != t->idx || rid != i + 1
        || strcmp(rec->sender, t->id->id) != 0) {
        (void)keten_err_set(KETEN_ERR_INCONSISTENT,
            "the record of request %llu is not a message this node sent under it",
            (unsigned long long)rid);
        note_alarm(t, &t->acks_bad, "ack record");
        goto out;
    }
    if (!submit_envelope(w, i, &env, &env_len)) {
        (void)keten_err_set(KETEN_ERR_MALFORMED, "prebuilt submit %zu", i);
        note_alarm(t, &t->acks_bad, "ack record");
        goto out;
    }
    if (KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &pe)
            != KETEN_OK
        || keten_logproof_record_is_envelope(rec, env, env_len, pe) != KETEN_OK) {
        note_alarm(t, &t->acks_bad, "ack record");
        goto out;
    }
    t->acks_checked++;
    if (rs->ack_ns[i] != 0) {
        t->duplicates++;
        goto out;
    }
    rs->ack_ns[i] = benchnet_mono_ns();
    (*acked)++;
    atomic_fetch_add(&rs->n_acked, 1);
out:
    keten_pb_free((ProtobufCMessage **)(void *)&pe);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
}

/* A ReceiptNotice: the proof of a `receipted` record of a message this node
 * sent, naming one of its recipients, whose receipt verifies with that
 * recipient's certificate (the head's signature once per distinct head) and
 * names the message and its envelope hash with outcome STORED. */
static void sender_notice(node_thr *t, const Keten__LeafProof *proof)
{
    run_state *rs = t->rs;
    const workload *w = rs->w;
    Keten__AuditRecord *rec = NULL;
    Keten__ReceiptLeaf *leaf = NULL;
    if (rs->rcp_ns == NULL) {
        t->unknown++;
        return;
    }
    int pc = proof_check(t, proof, &rec);
    if (pc == 1) {
        return; /* not confirmed: the broker sends it again */
    }
    if (pc < 0) {
        note_alarm(t, &t->notices_bad, "notice proof");
        return;
    }
    keten_err e = KETEN_OK;
    size_t i = SIZE_MAX, j = SIZE_MAX;
    if (rec->event != KETEN__EVENT__EVENT_RECEIPTED) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "event %d (reason %d), not receipted",
            (int)rec->event, (int)rec->reason);
    } else if (strcmp(rec->sender, t->id->id) != 0 || rec->msg_id.len != KETEN_MSG_ID_BYTES
        || (i = wl_lookup(w, rec->msg_id.data)) == SIZE_MAX || msg_sender(w, i) != t->idx) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "not a message this node sent");
    } else {
        for (size_t k = 0; k < w->R && j == SIZE_MAX; k++) {
            if (strcmp(w->rcpt[msg_rcpt(w, i, k)]->id, rec->node) == 0) {
                j = k;
            }
        }
        if (j == SIZE_MAX || rec->receipt == NULL) {
            e = keten_err_set(
                KETEN_ERR_INCONSISTENT, "%s is not a recipient, or no receipt", rec->node);
        }
    }
    if (e == KETEN_OK) {
        head_cache *hc = &t->heads[msg_rcpt(w, i, j)];
        const ProtobufCBinaryData *hb = &rec->receipt->head;
        if (hc->head == NULL || hc->len != hb->len
            || sodium_memcmp(hc->bytes, hb->data, hb->len) != 0) {
            const Keten__NodeCert *cert = keten_directory_find_id(rs->nt->bn.dir, rec->node);
            Keten__ReceiptBatchHead *h = NULL;
            e = cert == NULL ? keten_err_set(KETEN_ERR_UNKNOWN_NODE, "%s", rec->node)
                             : keten_receipt_head_verify(
                                 cert, BENCHNET_NETWORK, hb, &rec->receipt->signature, &h);
            if (e == KETEN_OK) {
                keten_pb_free((ProtobufCMessage **)(void *)&hc->head);
                free(hc->bytes);
                hc->bytes = benchnet_xcalloc(hb->len, 1);
                memcpy(hc->bytes, hb->data, hb->len);
                hc->len = hb->len;
                hc->head = h;
                t->heads_verified++;
            }
        }
        if (e == KETEN_OK) {
            e = keten_receipt_proof_check_leaf(hc->head, rec->receipt, &leaf);
        }
        if (e == KETEN_OK
            && (!keten_receipt_leaf_names(leaf, w->msg_id[i], w->env_hash[i])
                || leaf->outcome != KETEN__OUTCOME__OUTCOME_STORED)) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "the receipt leaf names another message "
                "or is not STORED");
        }
    }
    if (e != KETEN_OK) {
        note_alarm(t, &t->notices_bad, "notice record");
        goto out;
    }
    if (t->n_notice < BENCH_NOTICE_BATCH) {
        t->notice_leaf[t->n_notice++] = proof->leaf_index;
    }
    if (rs->rcp_ns[i * w->R + j] == 0) {
        rs->rcp_ns[i * w->R + j] = benchnet_mono_ns();
        atomic_fetch_add(&rs->n_receipted, 1);
    } else {
        t->duplicates++;
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&leaf);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
}

/* A frame at a sender: acks, errors, forwarded receipts, checkpoints. */
static void sender_frame(
    node_thr *t, void *sock, const uint8_t *buf, size_t len, uint64_t *acked, bool *hello_done)
{
    run_state *rs = t->rs;
    const workload *w = rs->w;
    Keten__Frame *f = NULL;
    if (KETEN_PB_UNPACK(keten__frame, buf, len, KETEN_FRAME_MAX, "frame", &f) != KETEN_OK) {
        t->unknown++;
        keten_err_clear();
        return;
    }
    uint64_t rid = f->request_id;
    switch (f->body_case) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        sender_ack(t, sock, rid, f->submit_ack->proof, acked);
        break;
    case KETEN__FRAME__BODY_ERROR:
        if (f->error->reason == KETEN__REASON__REASON_DUPLICATE && f->error->proof != NULL) {
            sender_ack(t, sock, rid, f->error->proof, acked);
            break;
        }
        if (rid >= 1 && rid <= w->n && msg_sender(w, rid - 1) == t->idx
            && rs->ack_ns[rid - 1] == 0) {
            rs->ack_ns[rid - 1] = UINT64_MAX; /* refused: never delivered */
            (*acked)++;
            atomic_fetch_add(&rs->n_errors, 1);
        }
        note_error(t, f->error);
        break;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE:
        sender_notice(t, f->receipt_notice->proof);
        break;
    case KETEN__FRAME__BODY_CHECKPOINT:
        on_checkpoint(t, sock, f->checkpoint);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_PUSH:
        *hello_done = true;
        break;
    case KETEN__FRAME__BODY_EXPIRED:
        t->unknown++; /* nothing of a run expires */
        break;
    default:
        break;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

static void signal_ready(node_thr *t)
{
    atomic_fetch_add(&t->rs->ready, 1);
}

static void *sender_main(void *arg)
{
    node_thr *t = arg;
    run_state *rs = t->rs;
    const workload *w = rs->w;
    void *sock = NULL;
    bool hello_done = false, counted = false;
    uint64_t acked = 0;
    t->heads = benchnet_xcalloc(w->n_rcpt, sizeof *t->heads);
    t->e = node_socket(rs, t->id, &sock);
    if (t->e == KETEN_OK) {
        t->e = node_hello(rs, sock, 0);
    }
    if (t->e != KETEN_OK) {
        snprintf(t->detail, sizeof t->detail, "%s", keten_err_detail());
        atomic_fetch_add(&rs->failed, 1);
        if (sock != NULL) {
            zmq_close(sock);
        }
        goto out;
    }
    /* Messages of this sender: i = idx, idx + N, ... below rs->limit. */
    size_t N = w->n_senders;
    size_t mine = rs->limit > t->idx ? (rs->limit - t->idx + N - 1) / N : 0;
    size_t k = 0;
    double per_sender = rs->rate / (double)N;
    uint64_t gap_ns = per_sender > 0 ? (uint64_t)(1e9 / per_sender) : 0;
    uint64_t offset_ns = gap_ns * t->idx / N;
    bool sending = true;
    for (;;) {
        int ph = atomic_load(&rs->phase);
        if (ph == PH_QUIT) {
            break;
        }
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            sender_frame(t, sock, zmq_msg_data(&m), zmq_msg_size(&m), &acked, &hello_done);
            zmq_msg_close(&m);
            if (t->n_notice == BENCH_NOTICE_BATCH) {
                (void)flush_notices(t, sock);
            }
        }
        (void)flush_notices(t, sock);
        if (hello_done && !counted) {
            counted = true;
            signal_ready(t);
        }
        uint64_t wait = BENCH_POLL_MAX_NS;
        if (ph == PH_GO && sending) {
            uint64_t now = benchnet_mono_ns();
            if (now >= rs->t_end_ns) {
                sending = false;
            } else if (k >= mine) {
                sending = false;
                t->exhausted = true;
            } else if (gap_ns == 0) {
                while (k < mine && k - acked < rs->o->window) {
                    size_t i = t->idx + k * N;
                    rs->sent_ns[i] = benchnet_mono_ns();
                    if (zmq_send(sock, w->submit[i].data, w->submit[i].len, 0) < 0) {
                        break;
                    }
                    atomic_fetch_add(&rs->n_sent, 1);
                    k++;
                }
            } else {
                while (k < mine) {
                    uint64_t due = rs->t0_ns + offset_ns + k * gap_ns;
                    if (due > now) {
                        wait = due - now < wait ? due - now : wait;
                        break;
                    }
                    size_t i = t->idx + k * N;
                    rs->sent_ns[i] = due; /* open loop: latency from the scheduled time */
                    if (zmq_send(sock, w->submit[i].data, w->submit[i].len, 0) < 0) {
                        break;
                    }
                    atomic_fetch_add(&rs->n_sent, 1);
                    k++;
                }
            }
            if (sending && rs->t_end_ns - now < wait) {
                wait = rs->t_end_ns - now;
            }
        }
        wait_readable(sock, wait);
    }
    zmq_close(sock);
out:
    for (size_t r = 0; r < w->n_rcpt; r++) {
        keten_pb_free((ProtobufCMessage **)(void *)&t->heads[r].head);
        free(t->heads[r].bytes);
    }
    free(t->heads);
    t->heads = NULL;
    return NULL;
}

/* A Deliver: its proof against a kept checkpoint, its record the envelope's
 * submitted record naming this node; then one STORED leaf for the burst's
 * receipt batch. A delivery whose proof is refused or against an unknown
 * checkpoint gets no leaf; its credit is returned. */
static void receiver_deliver(node_thr *t, const Keten__Deliver *dl)
{
    run_state *rs = t->rs;
    const workload *w = rs->w;
    Keten__AuditRecord *rec = NULL;
    Keten__Envelope *pe = NULL;
    int pc = proof_check(t, dl->proof, &rec);
    if (pc != 0) {
        t->credit_back++;
        if (pc < 0) {
            note_alarm(t, &t->deliveries_bad, "delivery proof");
        }
        return;
    }
    keten_err e = KETEN_PB_UNPACK(
        keten__envelope, dl->envelope.data, dl->envelope.len, KETEN_ENVELOPE_MAX, "envelope", &pe);
    if (e == KETEN_OK) {
        e = keten_logproof_record_is_envelope(rec, dl->envelope.data, dl->envelope.len, pe);
    }
    bool named = false;
    for (size_t k = 0; e == KETEN_OK && k < rec->n_recipients && !named; k++) {
        named = strcmp(rec->recipients[k], t->id->id) == 0;
    }
    if (e == KETEN_OK && !named) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "the record does not name this recipient");
    }
    if (e != KETEN_OK) {
        t->credit_back++;
        note_alarm(t, &t->deliveries_bad, "delivery record");
        goto out;
    }
    size_t i = wl_lookup(w, rec->msg_id.data);
    size_t j = i != SIZE_MAX ? msg_rcpt_slot(w, i, t->idx) : SIZE_MAX;
    if (j == SIZE_MAX) {
        t->unknown++;
    } else {
        uint64_t *slot = &rs->dlv_ns[i * w->R + j];
        if (*slot == 0) {
            *slot = benchnet_mono_ns();
            atomic_fetch_add(&rs->n_delivered, 1);
        } else {
            t->duplicates++;
        }
    }
    /* Stored (a message delivered again was stored before: STORED too). */
    keten_receipt_item *it = &t->items[t->n_items++];
    memcpy(it->msg_id, rec->msg_id.data, KETEN_MSG_ID_BYTES);
    memcpy(it->envelope_hash, rec->envelope_hash.data, KETEN_HASH_BYTES);
    it->outcome = KETEN__OUTCOME__OUTCOME_STORED;
    it->reason = KETEN__REASON__REASON_NONE;
out:
    keten_pb_free((ProtobufCMessage **)(void *)&pe);
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
}

/* One signed ReceiptBatch for the deliveries of the burst just read, and the
 * credit of the dropped ones. */
static void receiver_flush(node_thr *t, void *sock)
{
    keten_err e = KETEN_OK;
    if (t->n_items > 0) {
        keten_receipt_batch *b = NULL;
        e = keten_receipt_batch_new(
            t->id, BENCHNET_NETWORK, t->serial, keten_now_ms(), t->items, t->n_items, &b);
        if (e == KETEN_OK) {
            Keten__Frame f = KETEN__FRAME__INIT;
            f.body_case = KETEN__FRAME__BODY_RECEIPTS;
            f.receipts = &b->msg;
            e = send_msg(sock, &f);
        }
        if (e == KETEN_OK) {
            t->receipt_batches++;
            t->receipt_leaves += t->n_items;
        }
        keten_receipt_batch_destroy(&b);
        t->n_items = 0;
    }
    if (e == KETEN_OK && t->credit_back > 0) {
        e = send_credit(sock, t->credit_back);
        t->credit_back = 0;
    }
    if (e != KETEN_OK && t->e == KETEN_OK) {
        t->e = e;
        snprintf(t->detail, sizeof t->detail, "receipt batch: %s", keten_err_detail());
    }
}

static void *receiver_main(void *arg)
{
    node_thr *t = arg;
    run_state *rs = t->rs;
    void *sock = NULL;
    bool counted = false;
    t->items = benchnet_xcalloc(KETEN_RECEIPT_BATCH_MAX, sizeof *t->items);
    t->e = node_socket(rs, t->id, &sock);
    if (t->e == KETEN_OK) {
        t->e = node_hello(rs, sock, rs->o->credit);
    }
    if (t->e != KETEN_OK) {
        snprintf(t->detail, sizeof t->detail, "%s", keten_err_detail());
        atomic_fetch_add(&rs->failed, 1);
        if (sock != NULL) {
            zmq_close(sock);
        }
        free(t->items);
        t->items = NULL;
        return NULL;
    }
    while (atomic_load(&rs->phase) != PH_QUIT) {
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            Keten__Frame *f = NULL;
            if (KETEN_PB_UNPACK(
                    keten__frame, zmq_msg_data(&m), zmq_msg_size(&m), KETEN_FRAME_MAX, "frame", &f)
                != KETEN_OK) {
                t->unknown++;
                keten_err_clear();
            } else if (f->body_case == KETEN__FRAME__BODY_DELIVER) {
                receiver_deliver(t, f->deliver);
            } else if (f->body_case == KETEN__FRAME__BODY_DIRECTORY_PUSH && !counted) {
                counted = true;
                signal_ready(t);
            } else if (f->body_case == KETEN__FRAME__BODY_CHECKPOINT) {
                on_checkpoint(t, sock, f->checkpoint);
            } else if (f->body_case == KETEN__FRAME__BODY_ERROR) {
                note_error(t, f->error);
            }
            keten_pb_free((ProtobufCMessage **)(void *)&f);
            zmq_msg_close(&m);
            if (t->n_items == KETEN_RECEIPT_BATCH_MAX) {
                receiver_flush(t, sock);
            }
        }
        receiver_flush(t, sock);
        wait_readable(sock, BENCH_POLL_MAX_NS);
    }
    zmq_close(sock);
    free(t->items);
    t->items = NULL;
    return NULL;
}

/* Idle nodes: connected, listening, reading whatever comes. */
typedef struct idle_thr {
    run_state *rs;
    keten_identity **ids;
    size_t n;
    pthread_t th;
    bool started;
    keten_err e;
    uint64_t frames;
} idle_thr;

static void *idle_main(void *arg)
{
    idle_thr *t = arg;
    run_state *rs = t->rs;
    void **socks = benchnet_xcalloc(t->n, sizeof *socks);
    zmq_pollitem_t *items = benchnet_xcalloc(t->n, sizeof *items);
    bool *ready = benchnet_xcalloc(t->n, sizeof *ready);
    size_t n_ready = 0;
    for (size_t i = 0; i < t->n && t->e == KETEN_OK; i++) {
        t->e = node_socket(rs, t->ids[i], &socks[i]);
        if (t->e == KETEN_OK) {
            t->e = node_hello(rs, socks[i], 1);
            items[i] = (zmq_pollitem_t) { socks[i], 0, ZMQ_POLLIN, 0 };
        }
    }
    if (t->e != KETEN_OK) {
        atomic_fetch_add(&rs->failed, 1);
    }
    while (t->e == KETEN_OK && atomic_load(&rs->phase) != PH_QUIT) {
        if (zmq_poll(items, (int)t->n, 100) <= 0) {
            continue;
        }
        for (size_t i = 0; i < t->n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) {
                continue;
            }
            for (;;) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, socks[i], ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                const uint8_t *body = NULL;
                size_t blen = 0;
                if (!ready[i]
                    && frame_body(zmq_msg_data(&m), zmq_msg_size(&m), &body, &blen)
                        == F_DIRECTORY_PUSH) {
                    ready[i] = true;
                    if (++n_ready == t->n) {
                        atomic_fetch_add(&rs->ready, 1);
                    }
                }
                t->frames++;
                zmq_msg_close(&m);
            }
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        if (socks[i] != NULL) {
            zmq_close(socks[i]);
        }
    }
    free(ready);
    free(items);
    free(socks);
    return NULL;
}

/* ---- results -------------------------------------------------------------- */

typedef struct run_result {
    bool half;
    double rate_target; /* 0 = max */
    double window_s;
    uint64_t sent, acked, refused, delivered, receipted;
    double accepted_per_s, deliveries_per_s, receipts_per_s;
    double lat_ack[BENCH_PCTS], lat_dlv[BENCH_PCTS], lat_rcp[BENCH_PCTS];
    double cpu_s, cpu_user_s, cpu_sys_s, cpu_per_msg_us;
    floor_result floor;
    double ratio; /* broker CPU per message / the v1 floor (floor.per_msg_us) */
    double ratio_v2; /* ... / the v2 floor (floor.per_msg_v2_us) */
    double cpu_over_verify; /* ... / one envelope verification (floor.env_us) */
    benchnet_proc_stat proc;
    double gen_cpu_s;
    uint64_t acks_checked, acks_bad, duplicates, unknown, checkpoints;
    uint64_t checkpoints_distinct, checkpoints_bad, hellos_again, proofs_unknown_cp, acks_resent;
    uint64_t deliveries_bad, notices_bad, heads_verified, receipt_batches, receipt_leaves;
    double leaves_per_batch;
    bool exhausted, complete;
    int broker_exit;
    char first_error[200];
    char first_alarm[240];
} run_result;

static size_t collect(
    const uint64_t *from, const uint64_t *to, size_t n, size_t stride, uint64_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = from[i / stride], b = to[i];
        if (a != 0 && b != 0 && b != UINT64_MAX && a != UINT64_MAX) {
            out[k++] = b > a ? b - a : 0;
        }
    }
    qsort(out, k, sizeof out[0], benchnet_cmp_u64);
    return k;
}

static void latencies(const run_state *rs, run_result *r)
{
    const workload *w = rs->w;
    size_t n = rs->limit, nr = rs->limit * w->R;
    uint64_t *tmp = benchnet_xcalloc(nr > n ? nr : n, sizeof *tmp);
    size_t k = collect(rs->sent_ns, rs->ack_ns, n, 1, tmp);
    for (int p = 0; p < BENCH_PCTS; p++) {
        r->lat_ack[p] = benchnet_pct_ms(tmp, k, pct_values[p]);
    }
    k = collect(rs->sent_ns, rs->dlv_ns, nr, w->R, tmp);
    for (int p = 0; p < BENCH_PCTS; p++) {
        r->lat_dlv[p] = benchnet_pct_ms(tmp, k, pct_values[p]);
    }
    k = collect(rs->sent_ns, rs->rcp_ns, nr, w->R, tmp);
    for (int p = 0; p < BENCH_PCTS; p++) {
        r->lat_rcp[p] = benchnet_pct_ms(tmp, k, pct_values[p]);
    }
    free(tmp);
}

static void *ctx_new(const opts *o, size_t sockets)
{
    void *ctx = zmq_ctx_new();
    if (ctx != NULL) {
        zmq_ctx_set(ctx, ZMQ_IO_THREADS, o->io_threads);
        zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)(sockets + 64));
    }
    return ctx;
}

static bool wait_ready(run_state *rs, size_t want)
{
    uint64_t deadline = benchnet_mono_ns() + (uint64_t)BENCH_READY_MS * 1000000ull;
    while (benchnet_mono_ns() < deadline) {
        if (atomic_load(&rs->failed) > 0) {
            return false;
        }
        if (atomic_load(&rs->ready) >= want) {
            return true;
        }
        benchnet_sleep_ns(10000000ull);
    }
    return false;
}

/* One timed run against a fresh broker. rate 0 = max. */
static keten_err run_once(const opts *o, const net *nt, workload *w, unsigned run_no, double rate,
    bool half, run_result *r)
{
    memset(r, 0, sizeof *r);
    r->half = half;
    r->rate_target = rate;
    broker_proc bp;
    memset(&bp, 0, sizeof bp);
    keten_err e = broker_start(&bp, o, nt, run_no);
    if (e != KETEN_OK) {
        return e;
    }
    run_state *rs = benchnet_xcalloc(1, sizeof *rs);
    rs->o = o;
    rs->nt = nt;
    rs->w = w;
    rs->endpoint = bp.endpoint;
    rs->rate = rate;
    size_t want = rate > 0 ? (size_t)(rate * o->duration * 1.02) + 16 : w->n;
    rs->limit = want < w->n ? want : w->n;
    rs->sent_ns = benchnet_xcalloc(w->n, sizeof *rs->sent_ns);
    rs->ack_ns = benchnet_xcalloc(w->n, sizeof *rs->ack_ns);
    rs->dlv_ns = benchnet_xcalloc(w->n * w->R, sizeof *rs->dlv_ns);
    rs->rcp_ns = benchnet_xcalloc(w->n * w->R, sizeof *rs->rcp_ns);
    /* Records per message: submitted, then per recipient delivered and
     * receipted; and the broker's own (connections, directory). */
    rs->cp_bits_n = (uint64_t)w->n * (1 + 2 * w->R) + 65536;
    rs->cp_bits = benchnet_xcalloc(rs->cp_bits_n / 64 + 1, sizeof *rs->cp_bits);
    atomic_init(&rs->phase, PH_CONNECT);
    size_t n_thr = nt->n_senders + nt->n_receivers;
    rs->ctx = ctx_new(o, n_thr + nt->n_idle);
    node_thr *thr = benchnet_xcalloc(n_thr, sizeof *thr);
    idle_thr idle = { .rs = rs, .ids = nt->idle, .n = nt->n_idle };
    size_t groups = n_thr + (nt->n_idle > 0 ? 1 : 0);
    for (size_t i = 0; i < n_thr; i++) {
        node_thr *t = &thr[i];
        t->rs = rs;
        t->sender = i < nt->n_senders;
        t->idx = t->sender ? i : i - nt->n_senders;
        t->id = t->sender ? nt->senders[t->idx] : nt->receivers[t->idx];
        const Keten__NodeCert *cert = keten_directory_find_id(nt->bn.dir, t->id->id);
        t->serial = cert != NULL ? cert->serial : 0;
        t->started = pthread_create(&t->th, NULL, t->sender ? sender_main : receiver_main, t) == 0;
    }
    if (nt->n_idle > 0) {
        idle.started = pthread_create(&idle.th, NULL, idle_main, &idle) == 0;
    }
    if (!wait_ready(rs, groups)) {
        e = keten_err_set(KETEN_ERR_IO, "the nodes did not all connect to the broker (%zu of %zu)",
            atomic_load(&rs->ready), groups);
        goto stop;
    }
    size_t bad = 0;
    r->floor = measure_floor(w, nt, &bad);
    if (bad > 0) {
        e = keten_err_set(KETEN_ERR_BAD_SIGNATURE, "%zu floor signatures did not verify", bad);
        goto stop;
    }
    pid_t att = attach_start(o->attach_cmd, bp.pid);
    benchnet_proc_stat p0, p1, pe;
    benchnet_proc_read(bp.pid, &p0);
    double gen0 = benchnet_self_cpu_s();
    rs->t0_ns = benchnet_mono_ns() + 20000000ull;
    rs->t_end_ns = rs->t0_ns + (uint64_t)(o->duration * 1e9);
    atomic_store(&rs->phase, PH_GO);
    benchnet_sleep_ns(rs->t_end_ns - benchnet_mono_ns());
    uint64_t acked_at_end = atomic_load(&rs->n_acked);
    uint64_t dlv_at_end = atomic_load(&rs->n_delivered);
    uint64_t rcp_at_end = atomic_load(&rs->n_receipted);
    /* Senders stop at t_end; an early stop (prebuilt envelopes used up)
     * shortens the window. */
    uint64_t window_ns = rs->t_end_ns - rs->t0_ns;
    benchnet_attach_stop(att);
    /* Drain: every sent message acked (or refused), delivered and receipted. */
    uint64_t deadline = benchnet_mono_ns() + (uint64_t)BENCH_DRAIN_MS * 1000000ull;
    for (;;) {
        uint64_t sent = atomic_load(&rs->n_sent), refused = atomic_load(&rs->n_errors);
        uint64_t ok = sent - refused;
        if (atomic_load(&rs->n_acked) + refused == sent
            && atomic_load(&rs->n_delivered) == ok * w->R
            && atomic_load(&rs->n_receipted) == ok * w->R) {
            r->complete = true;
            break;
        }
        if (benchnet_mono_ns() > deadline) {
            break;
        }
        benchnet_sleep_ns(5000000ull);
    }
    benchnet_proc_read(bp.pid, &p1);
    r->gen_cpu_s = benchnet_self_cpu_s() - gen0;
    r->window_s = (double)window_ns / 1e9;
    r->sent = atomic_load(&rs->n_sent);
    r->refused = atomic_load(&rs->n_errors);
    r->acked = atomic_load(&rs->n_acked); /* proven acks only: a refusal is not counted there */
    r->delivered = atomic_load(&rs->n_delivered);
    r->receipted = atomic_load(&rs->n_receipted);
    r->accepted_per_s = (double)acked_at_end / r->window_s;
    r->deliveries_per_s = (double)dlv_at_end / r->window_s;
    r->receipts_per_s = (double)rcp_at_end / r->window_s;
    r->cpu_user_s = p1.cpu_user_s - p0.cpu_user_s;
    r->cpu_sys_s = p1.cpu_sys_s - p0.cpu_sys_s;
    r->cpu_s = r->cpu_user_s + r->cpu_sys_s;
    r->cpu_per_msg_us = r->acked > 0 ? r->cpu_s * 1e6 / (double)r->acked : 0;
    r->ratio = r->floor.per_msg_us > 0 ? r->cpu_per_msg_us / r->floor.per_msg_us : 0;
    r->cpu_over_verify = r->floor.env_us > 0 ? r->cpu_per_msg_us / r->floor.env_us : 0;
    latencies(rs, r);
stop:
    atomic_store(&rs->phase, PH_QUIT);
    for (size_t i = 0; i < n_thr; i++) {
        if (thr[i].started) {
            pthread_join(thr[i].th, NULL);
        }
        if (thr[i].e != KETEN_OK && e == KETEN_OK) {
            e = keten_err_set(thr[i].e, "node thread: %s", thr[i].detail);
        }
        r->acks_checked += thr[i].acks_checked;
        r->acks_bad += thr[i].acks_bad;
        r->duplicates += thr[i].duplicates;
        r->unknown += thr[i].unknown;
        r->checkpoints += thr[i].checkpoints;
        r->checkpoints_bad += thr[i].checkpoints_bad;
        r->hellos_again += thr[i].hellos_again;
        r->proofs_unknown_cp += thr[i].proofs_unknown_cp;
        r->acks_resent += thr[i].acks_resent;
        r->deliveries_bad += thr[i].deliveries_bad;
        r->notices_bad += thr[i].notices_bad;
        r->heads_verified += thr[i].heads_verified;
        r->receipt_batches += thr[i].receipt_batches;
        r->receipt_leaves += thr[i].receipt_leaves;
        r->exhausted = r->exhausted || thr[i].exhausted;
        if (thr[i].errors > 0 && r->first_error[0] == '\0') {
            snprintf(r->first_error, sizeof r->first_error, "reason %d: %s",
                thr[i].first_error_reason, thr[i].first_error);
        }
        if (thr[i].first_alarm[0] != '\0' && r->first_alarm[0] == '\0') {
            snprintf(r->first_alarm, sizeof r->first_alarm, "%s", thr[i].first_alarm);
        }
    }
    for (uint64_t b = 0; b < rs->cp_bits_n / 64 + 1; b++) {
        r->checkpoints_distinct += (uint64_t)__builtin_popcountll(atomic_load(&rs->cp_bits[b]));
    }
    r->leaves_per_batch
        = r->receipt_batches > 0 ? (double)r->receipt_leaves / (double)r->receipt_batches : 0;
    /* The v2 floor: every envelope verified, one receipt head verified per
     * batch, one checkpoint signed (and checked) per commit that grew the
     * log (each one some node was sent), shared by the messages of the run. */
    if (r->acked > 0 && r->floor.env_us > 0) {
        r->floor.per_msg_v2_us = r->floor.env_us
            + ((double)r->receipt_batches * r->floor.receipt_us
                  + (double)r->checkpoints_distinct * r->floor.checkpoint_us)
                / (double)r->acked;
        r->ratio_v2 = r->cpu_per_msg_us / r->floor.per_msg_v2_us;
    }
    if (idle.started) {
        pthread_join(idle.th, NULL);
    }
    if (rs->ctx != NULL) {
        zmq_ctx_term(rs->ctx);
    }
    if (benchnet_proc_read(bp.pid, &pe)) {
        r->proc = pe;
    }
    r->broker_exit = broker_stop(&bp);
    free(thr);
    free(rs->sent_ns);
    free(rs->ack_ns);
    free(rs->dlv_ns);
    free(rs->rcp_ns);
    free(rs->cp_bits);
    free(rs);
    return e;
}

/* ---- the backlog (memory) mode ------------------------------------------- */

typedef struct backlog_row {
    uint64_t queued;
    benchnet_proc_stat ps;
} backlog_row;

static keten_err run_backlog(const opts *o, net *nt, json_t *out)
{
    broker_proc bp;
    memset(&bp, 0, sizeof bp);
    keten_err e = broker_start(&bp, o, nt, 0);
    if (e != KETEN_OK) {
        return e;
    }
    workload w;
    memset(&w, 0, sizeof w);
    run_state *rs = benchnet_xcalloc(1, sizeof *rs);
    rs->o = o;
    rs->nt = nt;
    rs->endpoint = bp.endpoint;
    rs->ctx = ctx_new(o, nt->n_idle + nt->n_senders);
    atomic_init(&rs->phase, PH_CONNECT);
    idle_thr idle = { .rs = rs, .ids = nt->idle, .n = nt->n_idle };
    size_t n_rows = 0, cap_rows = 64;
    backlog_row *rows = benchnet_xcalloc(cap_rows, sizeof *rows);
    if (nt->n_idle > 0) {
        idle.started = pthread_create(&idle.th, NULL, idle_main, &idle) == 0;
        if (!wait_ready(rs, 1)) {
            e = keten_err_set(KETEN_ERR_IO, "the idle nodes did not all connect");
            goto out;
        }
    }
    printf("%zu idle nodes connected; queueing %llu messages for %zu offline nodes\n", nt->n_idle,
        (unsigned long long)o->backlog, nt->n_offline);
    benchnet_proc_read(bp.pid, &rows[n_rows].ps);
    rows[n_rows++].queued = 0;
    uint64_t queued = 0;
    uint64_t t_start = benchnet_mono_ns();
    while (queued < o->backlog) {
        uint64_t chunk
            = o->backlog - queued < BENCH_BACKLOG_CHUNK ? o->backlog - queued : BENCH_BACKLOG_CHUNK;
        if ((e = wl_build(&w, nt, o, (size_t)chunk, nt->offline, nt->n_offline, false))
            != KETEN_OK) {
            goto out;
        }
        /* One sender set per chunk: new sockets, max rate, all acks waited for. */
        rs->w = &w;
        rs->limit = w.n;
        rs->rate = 0;
        rs->sent_ns = benchnet_xcalloc(w.n, sizeof *rs->sent_ns);
        rs->ack_ns = benchnet_xcalloc(w.n, sizeof *rs->ack_ns);
        rs->dlv_ns = NULL;
        rs->rcp_ns = NULL;
        atomic_store(&rs->n_sent, 0);
        atomic_store(&rs->n_acked, 0);
        atomic_store(&rs->n_errors, 0);
        atomic_store(&rs->ready, 0);
        atomic_store(&rs->phase, PH_CONNECT);
        node_thr *thr = benchnet_xcalloc(nt->n_senders, sizeof *thr);
        for (size_t i = 0; i < nt->n_senders; i++) {
            thr[i] = (node_thr) { .rs = rs, .sender = true, .idx = i, .id = nt->senders[i] };
            thr[i].started = pthread_create(&thr[i].th, NULL, sender_main, &thr[i]) == 0;
        }
        bool ok = wait_ready(rs, nt->n_senders);
        rs->t0_ns = benchnet_mono_ns();
        rs->t_end_ns = rs->t0_ns + 3600 * BENCHNET_NS;
        if (ok) {
            atomic_store(&rs->phase, PH_GO);
        }
        uint64_t deadline = benchnet_mono_ns() + 600 * BENCHNET_NS;
        while (ok && atomic_load(&rs->n_acked) + atomic_load(&rs->n_errors) < w.n
            && benchnet_mono_ns() < deadline) {
            benchnet_sleep_ns(20000000ull);
        }
        atomic_store(&rs->phase, PH_QUIT);
        for (size_t i = 0; i < nt->n_senders; i++) {
            if (thr[i].started) {
                pthread_join(thr[i].th, NULL);
            }
        }
        uint64_t acked = atomic_load(&rs->n_acked);
        uint64_t refused = atomic_load(&rs->n_errors);
        char first[200] = "";
        for (size_t i = 0; i < nt->n_senders; i++) {
            if (thr[i].errors > 0 && first[0] == '\0') {
                snprintf(first, sizeof first, "reason %d: %s", thr[i].first_error_reason,
                    thr[i].first_error);
            }
        }
        free(thr);
        free(rs->sent_ns);
        free(rs->ack_ns);
        rs->sent_ns = rs->ack_ns = NULL;
        queued += acked;
        if (n_rows == cap_rows) {
            cap_rows *= 2;
            backlog_row *nr = realloc(rows, cap_rows * sizeof *rows);
            if (nr == NULL) {
                e = keten_err_set(KETEN_ERR_NOMEM, "rows");
                goto out;
            }
            rows = nr;
        }
        benchnet_proc_read(bp.pid, &rows[n_rows].ps);
        rows[n_rows++].queued = queued;
        printf("  queued %9llu  VmRSS %7llu KiB  RssAnon %7llu KiB  RssFile %7llu KiB  "
               "VmHWM %7llu KiB\n",
            (unsigned long long)queued, (unsigned long long)rows[n_rows - 1].ps.rss_kb,
            (unsigned long long)rows[n_rows - 1].ps.anon_kb,
            (unsigned long long)rows[n_rows - 1].ps.file_kb,
            (unsigned long long)rows[n_rows - 1].ps.hwm_kb);
        fflush(stdout);
        if (!ok || acked < w.n) {
            e = keten_err_set(KETEN_ERR_IO,
                "chunk not fully accepted: %llu of %zu (%llu refused; %s)",
                (unsigned long long)acked, w.n, (unsigned long long)refused, first);
            goto out;
        }
    }
    printf("backlog of %llu queued in %.1f s\n", (unsigned long long)queued,
        (double)(benchnet_mono_ns() - t_start) / 1e9);
out:
    atomic_store(&rs->phase, PH_QUIT);
    if (idle.started) {
        pthread_join(idle.th, NULL);
    }
    benchnet_proc_stat last;
    bool have_last = benchnet_proc_read(bp.pid, &last);
    if (rs->ctx != NULL) {
        zmq_ctx_term(rs->ctx);
    }
    int st = broker_stop(&bp);
    json_t *arr = json_array();
    for (size_t i = 0; i < n_rows; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "queued", json_integer((json_int_t)rows[i].queued));
        json_object_set_new(row, "vm_rss_kib", json_integer((json_int_t)rows[i].ps.rss_kb));
        json_object_set_new(row, "rss_anon_kib", json_integer((json_int_t)rows[i].ps.anon_kb));
        json_object_set_new(row, "rss_file_kib", json_integer((json_int_t)rows[i].ps.file_kb));
        json_object_set_new(row, "vm_hwm_kib", json_integer((json_int_t)rows[i].ps.hwm_kb));
        json_array_append_new(arr, row);
    }
    json_object_set_new(out, "backlog", arr);
    json_object_set_new(out, "broker_exit", json_integer(st));
    if (have_last) {
        json_object_set_new(out, "final_vm_hwm_kib", json_integer((json_int_t)last.hwm_kb));
        json_object_set_new(out, "final_threads", json_integer((json_int_t)last.threads));
    }
    free(rows);
    wl_free(&w);
    free(rs);
    return e;
}

/* ---- output --------------------------------------------------------------- */

#define M(field) offsetof(run_result, field)
static const benchnet_metric metrics[] = {
    { "accepted signals/s", "1/s", M(accepted_per_s), 0 },
    { "deliveries/s", "1/s", M(deliveries_per_s), 0 },
    { "receipts/s", "1/s", M(receipts_per_s), 0 },
    { "submit->ack p50", "ms", M(lat_ack[0]), 2 },
    { "submit->ack p90", "ms", M(lat_ack[1]), 2 },
    { "submit->ack p99", "ms", M(lat_ack[2]), 2 },
    { "submit->ack p99.9", "ms", M(lat_ack[3]), 2 },
    { "submit->delivered p50", "ms", M(lat_dlv[0]), 2 },
    { "submit->delivered p90", "ms", M(lat_dlv[1]), 2 },
    { "submit->delivered p99", "ms", M(lat_dlv[2]), 2 },
    { "submit->delivered p99.9", "ms", M(lat_dlv[3]), 2 },
    { "submit->receipt back p50", "ms", M(lat_rcp[0]), 2 },
    { "submit->receipt back p99", "ms", M(lat_rcp[2]), 2 },
    { "broker CPU", "s", M(cpu_s), 2 },
    { "broker CPU per message", "us", M(cpu_per_msg_us), 1 },
    { "crypto floor per message", "us", M(floor.per_msg_us), 1 },
    { "  envelope verify", "us", M(floor.env_us), 1 },
    { "  receipt verify", "us", M(floor.receipt_us), 1 },
    { "broker CPU / crypto floor", "x", M(ratio), 2 },
    { "crypto floor v2 per message", "us", M(floor.per_msg_v2_us), 1 },
    { "  checkpoint sign", "us", M(floor.checkpoint_us), 1 },
    { "broker CPU / crypto floor v2", "x", M(ratio_v2), 2 },
    { "broker CPU / envelope verify", "x", M(cpu_over_verify), 2 },
    { "receipt leaves per batch", "", M(leaves_per_batch), 1 },
    { "generator CPU", "s", M(gen_cpu_s), 2 },
};
#undef M

static double proc_hwm_mib(const run_result *r)
{
    return (double)r->proc.hwm_kb / 1024.0;
}

static void print_table(const char *title, const run_result *r, size_t n)
{
    benchnet_print_stats(
        title, r, sizeof *r, n, metrics, sizeof metrics / sizeof metrics[0], BENCH_NAME_WIDTH);
    double *h = benchnet_xcalloc(n, sizeof *h);
    for (size_t i = 0; i < n; i++) {
        h[i] = proc_hwm_mib(&r[i]);
    }
    qsort(h, n, sizeof h[0], benchnet_cmp_double);
    printf("  %-*s %12.1f %-3s [%.1f - %.1f]\n", BENCH_NAME_WIDTH, "broker peak RSS (VmHWM)",
        h[n / 2], "MiB", h[0], h[n - 1]);
    free(h);
}

static json_t *run_json(const run_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(r->rate_target > 0 ? "open-loop" : "max"));
    json_object_set_new(o, "rate_target", json_real(r->rate_target));
    json_object_set_new(o, "window_s", json_real(r->window_s));
    json_object_set_new(o, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(o, "acked", json_integer((json_int_t)r->acked));
    json_object_set_new(o, "refused", json_integer((json_int_t)r->refused));
    json_object_set_new(o, "delivered", json_integer((json_int_t)r->delivered));
    json_object_set_new(o, "receipted", json_integer((json_int_t)r->receipted));
    json_object_set_new(o, "complete", json_boolean(r->complete));
    json_object_set_new(o, "prebuilt_exhausted", json_boolean(r->exhausted));
    json_object_set_new(o, "accepted_per_s", json_real(r->accepted_per_s));
    json_object_set_new(o, "deliveries_per_s", json_real(r->deliveries_per_s));
    json_object_set_new(o, "receipts_per_s", json_real(r->receipts_per_s));
    const char *names[3] = { "submit_to_ack_ms", "submit_to_delivered_ms", "submit_to_receipt_ms" };
    const double *vals[3] = { r->lat_ack, r->lat_dlv, r->lat_rcp };
    for (int k = 0; k < 3; k++) {
        json_t *l = json_object();
        for (int p = 0; p < BENCH_PCTS; p++) {
            json_object_set_new(l, pct_names[p], json_real(vals[k][p]));
        }
        json_object_set_new(o, names[k], l);
    }
    json_t *b = json_object();
    json_object_set_new(b, "cpu_s", json_real(r->cpu_s));
    json_object_set_new(b, "cpu_user_s", json_real(r->cpu_user_s));
    json_object_set_new(b, "cpu_sys_s", json_real(r->cpu_sys_s));
    json_object_set_new(b, "cpu_per_msg_us", json_real(r->cpu_per_msg_us));
    json_object_set_new(b, "vm_hwm_kib", json_integer((json_int_t)r->proc.hwm_kb));
    json_object_set_new(b, "vm_rss_kib", json_integer((json_int_t)r->proc.rss_kb));
    json_object_set_new(b, "rss_anon_kib", json_integer((json_int_t)r->proc.anon_kb));
    json_object_set_new(b, "rss_file_kib", json_integer((json_int_t)r->proc.file_kb));
    json_object_set_new(b, "threads", json_integer((json_int_t)r->proc.threads));
    json_object_set_new(b, "exit_status", json_integer(r->broker_exit));
    json_object_set_new(b, "cpu_per_msg_over_verify", json_real(r->cpu_over_verify));
    json_object_set_new(o, "broker", b);
    json_t *f = json_object();
    json_object_set_new(f, "envelope_verify_us", json_real(r->floor.env_us));
    json_object_set_new(f, "receipt_verify_us", json_real(r->floor.receipt_us));
    json_object_set_new(f, "per_msg_us", json_real(r->floor.per_msg_us));
    json_object_set_new(f, "checkpoint_sign_us", json_real(r->floor.checkpoint_us));
    json_object_set_new(f, "per_msg_v2_us", json_real(r->floor.per_msg_v2_us));
    json_object_set_new(o, "crypto_floor", f);
    json_object_set_new(o, "cpu_over_floor", json_real(r->ratio));
    json_object_set_new(o, "cpu_over_floor_v2", json_real(r->ratio_v2));
    json_object_set_new(o, "generator_cpu_s", json_real(r->gen_cpu_s));
    json_object_set_new(o, "acks_verified", json_integer((json_int_t)r->acks_checked));
    json_object_set_new(o, "acks_bad", json_integer((json_int_t)r->acks_bad));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)r->duplicates));
    json_object_set_new(o, "unknown_frames", json_integer((json_int_t)r->unknown));
    json_object_set_new(o, "checkpoints_seen", json_integer((json_int_t)r->checkpoints));
    json_object_set_new(
        o, "checkpoints_distinct", json_integer((json_int_t)r->checkpoints_distinct));
    json_object_set_new(o, "checkpoints_bad", json_integer((json_int_t)r->checkpoints_bad));
    json_object_set_new(o, "hellos_again", json_integer((json_int_t)r->hellos_again));
    json_object_set_new(
        o, "proofs_unknown_checkpoint", json_integer((json_int_t)r->proofs_unknown_cp));
    json_object_set_new(o, "acks_resent", json_integer((json_int_t)r->acks_resent));
    json_object_set_new(o, "deliveries_bad", json_integer((json_int_t)r->deliveries_bad));
    json_object_set_new(o, "notices_bad", json_integer((json_int_t)r->notices_bad));
    json_object_set_new(o, "receipt_batches", json_integer((json_int_t)r->receipt_batches));
    json_object_set_new(o, "receipt_leaves", json_integer((json_int_t)r->receipt_leaves));
    json_object_set_new(o, "receipt_heads_verified", json_integer((json_int_t)r->heads_verified));
    if (r->first_error[0] != '\0') {
        json_object_set_new(o, "first_error", json_string(r->first_error));
    }
    if (r->first_alarm[0] != '\0') {
        json_object_set_new(o, "first_alarm", json_string(r->first_alarm));
    }
    return o;
}

static json_t *summary_json(const run_result *r, size_t n)
{
    return benchnet_stats_json(r, sizeof *r, n, metrics, sizeof metrics / sizeof metrics[0]);
}

/* ---- main ----------------------------------------------------------------- */

static bool parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || s[0] == '-') {
        return false;
    }
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k') {
        mul = 1024;
        end++;
    } else if (*end == 'M') {
        mul = 1024 * 1024;
        end++;
    } else if (*end == 'G') {
        mul = 1024ull * 1024 * 1024;
        end++;
    }
    if (*end != '\0' || v > max / mul || v * mul < min) {
        return false;
    }
    *out = v * mul;
    return true;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        { "broker", required_argument, NULL, 'b' },
        { "size", required_argument, NULL, 's' },
        { "recipients", required_argument, NULL, 'R' },
        { "senders", required_argument, NULL, 'N' },
        { "receivers", required_argument, NULL, 'M' },
        { "rate", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "transport", required_argument, NULL, 't' },
        { "runs", required_argument, NULL, 'k' },
        { "window", required_argument, NULL, 'w' },
        { "credit", required_argument, NULL, 'c' },
        { "backlog", required_argument, NULL, 'B' },
        { "idle-nodes", required_argument, NULL, 'I' },
        { "offline-nodes", required_argument, NULL, 'F' },
        { "map-size", required_argument, NULL, 'm' },
        { "store-dir", required_argument, NULL, 'S' },
        { "prebuild-rate", required_argument, NULL, 'P' },
        { "io-threads", required_argument, NULL, 'T' },
        { "attach", required_argument, NULL, 'A' },
        { "broker-arg", required_argument, NULL, 'G' },
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
        case 's':
            if (!parse_size(optarg, 64, KETEN_ENVELOPE_MAX / 2, &v)) {
                return benchnet_usage_error("--size: 64 bytes to 512 KiB");
            }
            o->size = (size_t)v;
            break;
        case 'R':
            if (!parse_size(optarg, 1, KETEN_MAX_RECIPIENTS, &v)) {
                return benchnet_usage_error("--recipients: 1 to 64");
            }
            o->recipients = (size_t)v;
            break;
        case 'N':
            if (!parse_size(optarg, 1, 256, &v)) {
                return benchnet_usage_error("--senders: 1 to 256");
            }
            o->senders = (size_t)v;
            break;
        case 'M':
            if (!parse_size(optarg, 1, 256, &v)) {
                return benchnet_usage_error("--receivers: 1 to 256");
            }
            o->receivers = (size_t)v;
            break;
        case 'r':
            if (strcmp(optarg, "max") == 0) {
                o->rate = 0;
                o->rate_half = false;
            } else if (strcmp(optarg, "half") == 0) {
                o->rate = 0;
                o->rate_half = true;
            } else if (parse_size(optarg, 1, 10000000, &v)) {
                o->rate = (double)v;
                o->rate_half = false;
            } else {
                return benchnet_usage_error("--rate: max, half or signals per second");
            }
            break;
        case 'd':
            if (!benchnet_parse_seconds(optarg, 0.2, 3600, &o->duration)) {
                return benchnet_usage_error("--duration: 0.2 to 3600 seconds");
            }
            break;
        case 't':
            if (strcmp(optarg, "ipc") == 0) {
                o->tcp = false;
            } else if (strcmp(optarg, "tcp") == 0) {
                o->tcp = true;
            } else {
                return benchnet_usage_error("--transport: ipc or tcp");
            }
            break;
        case 'k':
            if (!parse_size(optarg, 1, BENCH_RUNS_MAX, &v)) {
                return benchnet_usage_error("--runs: 1 to 50");
            }
            o->runs = (unsigned)v;
            break;
        case 'w':
            if (!parse_size(optarg, 1, 900, &v)) {
                return benchnet_usage_error(
                    "--window: 1 to 900 (below the broker's send high-water mark)");
            }
            o->window = (unsigned)v;
            break;
        case 'c':
            if (!parse_size(optarg, 1, 900, &v)) {
                return benchnet_usage_error("--credit: 1 to 900");
            }
            o->credit = (unsigned)v;
            break;
        case 'B':
            if (!parse_size(optarg, 1, 100000000, &o->backlog)) {
                return benchnet_usage_error("--backlog: 1 to 100000000 messages");
            }
            break;
        case 'I':
            if (!parse_size(optarg, 0, BENCH_NODES_MAX, &v)) {
                return benchnet_usage_error("--idle-nodes: 0 to 4000");
            }
            o->idle_nodes = (size_t)v;
            break;
        case 'F':
            if (!parse_size(optarg, 1, 256, &v)) {
                return benchnet_usage_error("--offline-nodes: 1 to 256");
            }
            o->offline_nodes = (size_t)v;
            break;
        case 'm':
            if (!parse_size(optarg, 16u << 20, 1ull << 40, &o->map_size)) {
                return benchnet_usage_error("--map-size: 16M to 1T bytes");
            }
            break;
        case 'S':
            o->store_dir = optarg;
            break;
        case 'P':
            if (!parse_size(optarg, 100, 1000000, &v)) {
                return benchnet_usage_error("--prebuild-rate: 100 to 1000000");
            }
            o->prebuild_rate = (double)v;
            break;
        case 'T':
            if (!parse_size(optarg, 1, 16, &v)) {
                return benchnet_usage_error("--io-threads: 1 to 16");
            }
            o->io_threads = (int)v;
            break;
        case 'A':
            o->attach_cmd = optarg;
            break;
        case 'G':
            if (o->n_broker_args == sizeof o->broker_args / sizeof o->broker_args[0]) {
                return benchnet_usage_error("--broker-arg: at most 16");
            }
            o->broker_args[o->n_broker_args++] = optarg;
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
    if (o->recipients > o->receivers && o->backlog == 0) {
        return benchnet_usage_error("--recipients must not exceed --receivers");
    }
    if (o->backlog > 0 && o->recipients > o->offline_nodes) {
        return benchnet_usage_error(
            "--recipients must not exceed --offline-nodes in --backlog mode");
    }
    return 0;
}

static void write_json(const opts *o, json_t *root)
{
    benchnet_write_json(o->json_path, root);
    json_decref(root);
}

static json_t *config_json(const opts *o, const workload *w, const fsync_result *fs)
{
    json_t *c = json_object();
    json_object_set_new(c, "signal_bytes", json_integer((json_int_t)o->size));
    json_object_set_new(
        c, "padded_bytes", json_integer((json_int_t)keten_envelope_pad_bucket(o->size)));
    json_object_set_new(
        c, "envelope_bytes", json_integer((json_int_t)(w != NULL ? w->env_len : 0)));
    json_object_set_new(c, "recipients", json_integer((json_int_t)o->recipients));
    json_object_set_new(c, "senders", json_integer((json_int_t)o->senders));
    json_object_set_new(c, "receivers", json_integer((json_int_t)o->receivers));
    json_object_set_new(c, "rate",
        o->rate_half      ? json_string("half")
            : o->rate > 0 ? json_real(o->rate)
                          : json_string("max"));
    json_object_set_new(c, "duration_s", json_real(o->duration));
    json_object_set_new(c, "transport", json_string(o->tcp ? "tcp" : "ipc"));
    json_object_set_new(c, "runs", json_integer(o->runs));
    json_object_set_new(c, "window", json_integer(o->window));
    json_object_set_new(c, "credit", json_integer(o->credit));
    json_object_set_new(c, "idle_nodes", json_integer((json_int_t)o->idle_nodes));
    json_object_set_new(c, "cpus", json_integer(cpu_count()));
    json_object_set_new(c, "fdatasync_p50_ms", json_real(fs->p50_ms));
    json_object_set_new(c, "fdatasync_p99_ms", json_real(fs->p99_ms));
    return c;
}

static bool run_ok(const run_result *r)
{
    return r->complete && r->refused == 0 && r->acks_bad == 0 && r->unknown == 0
        && r->checkpoints_bad == 0 && r->deliveries_bad == 0 && r->notices_bad == 0;
}

static void print_run(unsigned k, const run_result *r)
{
    printf("run %u%s: %.0f accepted/s, %.0f deliveries/s, %.0f receipts/s, ack p99 %.2f ms, "
           "CPU/msg %.1f us = %.2fx one envelope verify = %.2fx floor v2, peak RSS %.1f MiB%s%s\n",
        k + 1, r->rate_target > 0 ? (r->half ? " (half rate)" : " (open loop)") : " (max)",
        r->accepted_per_s, r->deliveries_per_s, r->receipts_per_s, r->lat_ack[2], r->cpu_per_msg_us,
        r->cpu_over_verify, r->ratio_v2, proc_hwm_mib(r), r->complete ? "" : " INCOMPLETE",
        r->exhausted ? " (prebuilt envelopes ran out: raise --prebuild-rate)" : "");
    printf("  %llu checkpoints seen (%llu distinct), %llu receipt batches (%.1f leaves each), "
           "%llu proofs against an unknown checkpoint\n",
        (unsigned long long)r->checkpoints, (unsigned long long)r->checkpoints_distinct,
        (unsigned long long)r->receipt_batches, r->leaves_per_batch,
        (unsigned long long)r->proofs_unknown_cp);
    if (r->refused > 0 || r->acks_bad > 0 || r->unknown > 0) {
        printf("  refused %llu, bad acks %llu, unknown frames %llu; first error: %s\n",
            (unsigned long long)r->refused, (unsigned long long)r->acks_bad,
            (unsigned long long)r->unknown, r->first_error);
    }
    if (r->checkpoints_bad > 0 || r->deliveries_bad > 0 || r->notices_bad > 0 || r->acks_bad > 0) {
        printf("  refused as a node would (alarms): checkpoints %llu, acks %llu, deliveries "
               "%llu, notices %llu; first: %s\n",
            (unsigned long long)r->checkpoints_bad, (unsigned long long)r->acks_bad,
            (unsigned long long)r->deliveries_bad, (unsigned long long)r->notices_bad,
            r->first_alarm);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    benchnet_set_prog("keten-bench");
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    opts o = {
        .size = 1000,
        .recipients = 1,
        .senders = 4,
        .receivers = 4,
        .duration = 10,
        .runs = 1,
        .window = 256,
        .credit = 256,
        .offline_nodes = 4,
        .prebuild_rate = 16000,
        .io_threads = 1,
    };
    int pr = parse_opts(argc, argv, &o);
    if (pr != 0) {
        return pr < 0 ? 0 : pr;
    }
    char bpath[PATH_MAX];
    o.broker_path
        = benchnet_find_prog(o.broker_path, "KETEN_BROKER", "broker", "keten-broker", true, bpath);
    if (access(o.broker_path, X_OK) != 0) {
        fprintf(stderr, "keten-bench: cannot run %s; give --broker PATH\n", o.broker_path);
        return 1;
    }
    if (o.backlog > 0 && o.map_size == 0) {
        o.map_size = 16ull << 30;
    }
    if (o.backlog > 0) {
        o.receivers = 1; /* unused; the recipients are the offline nodes */
    }
    benchnet_install_signals(on_fatal_signal);
    net nt;
    memset(&nt, 0, sizeof nt);
    if (!benchnet_make_root(&nt.bn, o.store_dir, "keten-bench")) {
        return 1;
    }
    int rc = 0;
    workload w;
    memset(&w, 0, sizeof w);
    run_result *res = benchnet_xcalloc(2 * o.runs, sizeof *res);
    size_t n_max = 0, n_fixed = 0;
    json_t *root = json_object();
    printf("keten-bench: broker %s\n", o.broker_path);
    keten_err e = net_make(&nt, &o);
    if (e != KETEN_OK) {
        benchnet_report("making the network", e);
        rc = 1;
        goto out;
    }
    fsync_result fs = measure_fsync(nt.bn.root);
    printf("store in %s: fdatasync p50 %.2f ms, p99 %.2f ms (an LMDB commit does two)\n",
        nt.bn.root, fs.p50_ms, fs.p99_ms);
    if (o.backlog > 0) {
        json_object_set_new(root, "config", config_json(&o, NULL, &fs));
        e = run_backlog(&o, &nt, root);
        if (e != KETEN_OK) {
            benchnet_report("backlog", e);
            rc = 1;
        }
        write_json(&o, root);
        root = NULL;
        goto out;
    }
    json_t *runs = json_array();
    for (unsigned k = 0; k < o.runs && rc == 0; k++) {
        for (int step = 0; step < (o.rate_half ? 2 : 1) && rc == 0; step++) {
            double rate = o.rate;
            bool half = step == 1;
            if (half) {
                rate = res[n_max - 1].accepted_per_s / 2;
            }
            size_t need = rate > 0 ? (size_t)(rate * o.duration * 1.02) + 64
                                   : (size_t)(o.prebuild_rate * o.duration);
            if (need > BENCH_PREBUILD_MAX) {
                need = BENCH_PREBUILD_MAX;
            }
            if (w.n < need || keten_mono_ms() - w.built_ms > BENCH_PREBUILD_REUSE_MS) {
                printf("prebuilding %zu envelopes ...\n", need);
                fflush(stdout);
                uint64_t t = benchnet_mono_ns();
                if ((e = wl_build(&w, &nt, &o, need, nt.receivers, nt.n_receivers, true))
                    != KETEN_OK) {
                    benchnet_report("prebuilding the load", e);
                    rc = 1;
                    break;
                }
                printf("  %.1f s; envelope %zu bytes (signal %zu, padded %zu)\n",
                    (double)(benchnet_mono_ns() - t) / 1e9, w.env_len, o.size,
                    keten_envelope_pad_bucket(o.size));
            }
            run_result *r = rate > 0 ? &res[o.runs + n_fixed] : &res[n_max];
            e = run_once(&o, &nt, &w, k * 2 + (unsigned)step, rate, half, r);
            if (e != KETEN_OK) {
                benchnet_report("run", e);
                rc = 1;
                break;
            }
            print_run(k, r);
            if (!run_ok(r)) {
                rc = 1;
            }
            json_array_append_new(runs, run_json(r));
            if (rate > 0) {
                n_fixed++;
            } else {
                n_max++;
            }
        }
    }
    json_object_set_new(root, "config", config_json(&o, &w, &fs));
    json_object_set_new(root, "runs", runs);
    json_t *sum = json_object();
    printf("\nketen-bench: %zu B signals (envelope %zu B), %zu recipient%s, %zu senders, "
           "%zu receivers, %s, %.1f s per run\n",
        o.size, w.env_len, o.recipients, o.recipients == 1 ? "" : "s", o.senders, o.receivers,
        o.tcp ? "tcp://127.0.0.1" : "ipc://", o.duration);
    if (n_max > 0) {
        print_table("as fast as possible", res, n_max);
        json_object_set_new(sum, "max", summary_json(res, n_max));
    }
    if (n_fixed > 0) {
        char title[96];
        snprintf(title, sizeof title,
            o.rate_half ? "at half the maximum rate (open loop)" : "at %.0f signals/s (open loop)",
            o.rate);
        print_table(title, res + o.runs, n_fixed);
        json_object_set_new(
            sum, o.rate_half ? "half" : "fixed", summary_json(res + o.runs, n_fixed));
    }
    json_object_set_new(root, "summary", sum);
    write_json(&o, root);
    root = NULL;
out:
    json_decref(root);
    wl_free(&w);
    free(res);
    net_free(&nt);
    if (o.keep) {
        printf("kept %s\n", nt.bn.root);
    } else {
        (void)benchnet_rm_tree(nt.bn.root);
    }
    return rc;
}
