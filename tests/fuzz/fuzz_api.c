/*
 * fuzz_api.c - requests to the node's local API (client/api.c), sent as the
 * command line sends them: the input is the body of one request from a
 * DEALER socket to the API's ROUTER socket, handled by
 * keten_apizmq_on_readable() inside a group-commit batch as the daemon does.
 *
 * The node is gemeente-diemen of the test network (fuzz_common.h),
 * directory version 1, set up once as tests/unit/fixture_node.c does it,
 * with a real store in a temporary directory (on /dev/shm when there is
 * one), made again empty before each input; the API socket is opened again
 * for each input (no waiter of one input answers another), in a home of
 * its own. The link is
 * never connected: what the node would send to the broker is held and
 * dropped. The wall clock this process sees is moved back to FUZZ_T_OPEN,
 * as in fuzz_node_frame.c, so that times in requests mean the same in every
 * run of the corpus.
 *
 * Invariants:
 *   1. at most one reply, and a reply is a JSON object with a boolean "ok";
 *      a failure has a non-empty "error" and an "exit" of 1, 2 or 3;
 *   2. every request is answered at once, except a send or reply with
 *      "wait" true and an inbox with a positive "wait_ms", which may wait;
 *   3. a body that is not a JSON object is a usage error (exit 2);
 *   4. a send or reply that succeeded names a msg_id of 32 hex digits, and
 *      the node then knows that message: {"cmd":"status","msg_id":...}
 *      succeeds.
 */
#include <jansson.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "apizmq.h"
#include "dirs.h"
#include "fuzz_common.h"
#include "inbox.h"
#include "link.h"
#include "log.h"
#include "node.h"
#include "pb.h"
#include "store.h"
#include "util.h"
#include "witness.h"

/* An answer due at once comes within this: generous, because a fuzzer run
 * at nice 19 on a loaded machine may wait for the CPU; below libFuzzer's
 * -timeout=25, so that a lost reply is reported as this invariant. */
#define REPLY_MS 10000
#define WAIT_POLL_MS 5 /* how long a request that may wait is given */

/* ---- the wall clock, moved back to the corpus's time --------------------- */

static int64_t clock_shift_ms;
static bool clock_shift_set;

int clock_gettime(clockid_t id, struct timespec *ts);
int clock_gettime(clockid_t id, struct timespec *ts)
{
    long rc = syscall(SYS_clock_gettime, id, ts);
    if (rc != 0 || (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE)) {
        return (int)rc;
    }
    int64_t ms = (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
    if (!clock_shift_set) {
        clock_shift_ms = (int64_t)FUZZ_T_OPEN - ms;
        clock_shift_set = true;
    }
    int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + clock_shift_ms * 1000000;
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
    return 0;
}

/* ---- the node ------------------------------------------------------------ */

static struct {
    bool ready;
    char dir[PATH_MAX];
    char home[PATH_MAX];
    unsigned long n; /* inputs so far: this input's home is home-N */
    char anchor[PATH_MAX];
    char directory[PATH_MAX];
    char endpoint[PATH_MAX + 8];
    keten_node node;
} S;

static void join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", a, b);
    FUZZ_CHECK(n > 0 && n < PATH_MAX);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    /* gone already: libzmq removes a closed ipc socket's file itself */
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove path and everything under it (our own temporary files); a path
 * that is not there is no error. */
static void remove_tree(const char *path)
{
    if (access(path, F_OK) == 0) {
        FUZZ_CHECK(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    }
}

static void node_close(void)
{
    keten_node *node = &S.node;
    keten_apizmq_destroy(&node->apizmq);
    keten_api_destroy(&node->api);
    keten_witness_destroy(&node->witness);
    free(node->receipts);
    node->receipts = NULL;
    node->n_receipts = 0;
    node->cap_receipts = 0;
    keten_directory_destroy(&node->dir);
    keten_store_destroy(&node->store);
    if (S.home[0] != '\0') {
        remove_tree(S.home);
        S.home[0] = '\0';
    }
}

static void cleanup(void)
{
    keten_node *node = &S.node;
    node_close();
    keten_link_destroy(&node->link);
    if (node->zctx != NULL) {
        zmq_ctx_term(node->zctx);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&node->anchor);
    if (S.dir[0] != '\0') {
        remove_tree(S.dir);
    }
}

static void setup(void)
{
    const fuzz_network *net = fuzz_net();
    keten_log_threshold = 0; /* quiet: refusals are expected by the thousand */
    struct stat st;
    const char *tmp = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        tmp = "/dev/shm";
    } else if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    int n = snprintf(S.dir, sizeof S.dir, "%s/keten-fuzz-api-XXXXXX", tmp);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof S.dir && mkdtemp(S.dir) != NULL);
    atexit(cleanup);
    join(S.anchor, S.dir, "network.pub");
    join(S.directory, S.dir, "directory");
    FUZZ_MUST(keten_file_write(S.anchor, net->anchor_bytes, net->anchor_len, 0644, false));
    FUZZ_MUST(keten_file_write(S.directory, net->dir1, net->dir1_len, 0644, false));
    n = snprintf(S.endpoint, sizeof S.endpoint, "ipc://%s/broker.sock", S.dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof S.endpoint);

    keten_node *node = &S.node;
    node->opts = (keten_node_opts) {
        .home = NULL, /* node_open() */
        .anchor = S.anchor,
        .directory = S.directory,
        .broker = S.endpoint,
        .witness_timeout_ms = KETEN_NODE_WITNESS_TIMEOUT_MS,
    };
    node->me = net->nodes[0];
    FUZZ_MUST(keten_anchor_load(S.anchor, &node->anchor));
    node->zctx = zmq_ctx_new();
    FUZZ_CHECK(node->zctx != NULL);
    FUZZ_MUST(keten_link_new(node->zctx, S.endpoint, node->me,
        fuzz_node(FUZZ_BROKER)->transport_pk, &node->link));
    keten_err_clear();
    S.ready = true;
}

static void node_open(void)
{
    keten_node *node = &S.node;
    /* A new home for every input: libzmq removes a closed ipc socket's file
     * in its I/O thread, some time after zmq_close() returned, and would
     * remove a later socket of the same name. */
    int n = snprintf(S.home, sizeof S.home, "%s/home-%lu", S.dir, ++S.n);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof S.home && mkdir(S.home, 0700) == 0);
    node->opts.home = S.home;
    memset(&node->counters, 0, sizeof node->counters);
    node->next_request_id = 0;
    node->started_at = keten_now_ms();
    node->dir_needed = 0;
    node->resend_active = false;
    node->resend_has_pos = false;
    node->n_notice_acks = 0;
    memset(node->submit_rid, 0, sizeof node->submit_rid);
    node->submit_next = 0;
    node->frame = NULL;
    FUZZ_MUST(keten_store_open(node->opts.home, &node->store));
    FUZZ_MUST(keten_dirs_load(node));
    FUZZ_MUST(keten_witness_new(node, &node->witness));
    FUZZ_MUST(keten_api_open(node, &node->api));
    FUZZ_MUST(keten_apizmq_open(node, &node->apizmq));
    keten_err_clear();
}

/* ---- one request --------------------------------------------------------- */

/* May the request wait for its answer (api.h)? */
static bool may_wait(const uint8_t *data, size_t size)
{
    json_t *req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    bool wait = false;
    if (json_is_object(req)) {
        const char *cmd = json_string_value(json_object_get(req, "cmd"));
        json_t *w = json_object_get(req, "wait_ms");
        wait = cmd != NULL
            && (((strcmp(cmd, "send") == 0 || strcmp(cmd, "reply") == 0)
                    && json_is_true(json_object_get(req, "wait")))
                || (strcmp(cmd, "inbox") == 0 && json_is_integer(w)
                    && json_integer_value(w) > 0));
    }
    json_decref(req);
    return wait;
}

/* zmq_poll of one socket for POLLIN, again after a signal (libFuzzer's
 * timer for -timeout sends SIGALRM every few seconds): 1 when readable,
 * 0 when timeout_ms passed. */
static int poll_in(void *sock, int timeout_ms)
{
    uint64_t until = keten_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = keten_mono_ms();
        long left = now < until ? (long)(until - now) : 0;
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll(&item, 1, left);
        if (rc >= 0) {
            return rc;
        }
        FUZZ_CHECK(zmq_errno() == EINTR);
    }
}

/* Send body, let the node handle it in one batch, return the reply (NULL:
 * none within timeout_ms). */
static json_t *request(void *client, const void *body, size_t len, int timeout_ms)
{
    keten_node *node = &S.node;
    /* A DEALER queues on a connecting pipe: these never block. */
    FUZZ_CHECK(zmq_send(client, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == 0);
    FUZZ_CHECK(zmq_send(client, body, len, ZMQ_DONTWAIT) == (int)len);
    FUZZ_CHECK(poll_in(keten_apizmq_socket(node->apizmq), REPLY_MS) == 1);

    FUZZ_MUST(keten_store_batch_begin(node->store));
    keten_link_hold(node->link);
    keten_apizmq_hold(node->apizmq);
    keten_apizmq_on_readable(node);
    keten_inbox_flush_receipts(node);
    keten_err e = keten_store_batch_end(node->store);
    keten_err_clear();
    keten_link_release(node->link, false);
    keten_apizmq_release(node->apizmq, e == KETEN_OK);

    if (poll_in(client, timeout_ms) != 1) {
        return NULL;
    }
    /* Both parts are there once the first is (messages are atomic). */
    zmq_msg_t m;
    zmq_msg_init(&m);
    FUZZ_CHECK(zmq_msg_recv(&m, client, ZMQ_DONTWAIT) == 0 && zmq_msg_more(&m));
    zmq_msg_close(&m);
    zmq_msg_init(&m);
    FUZZ_CHECK(zmq_msg_recv(&m, client, ZMQ_DONTWAIT) >= 0 && !zmq_msg_more(&m));
    json_error_t jerr;
    json_t *r = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), JSON_REJECT_DUPLICATES, &jerr);
    zmq_msg_close(&m);
    /* 1 */
    FUZZ_CHECK(json_is_object(r));
    FUZZ_CHECK(json_is_boolean(json_object_get(r, "ok")));
    if (!json_is_true(json_object_get(r, "ok"))) {
        const char *err = json_string_value(json_object_get(r, "error"));
        json_t *ex = json_object_get(r, "exit");
        FUZZ_CHECK(err != NULL && err[0] != '\0');
        FUZZ_CHECK(json_is_integer(ex) && json_integer_value(ex) >= 1
            && json_integer_value(ex) <= 3);
    }
    /* only one */
    FUZZ_CHECK(poll_in(client, 0) == 0);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!S.ready) {
        setup();
    }
    keten_node *node = &S.node;
    node_open();
    void *client = zmq_socket(node->zctx, ZMQ_DEALER);
    FUZZ_CHECK(client != NULL);
    int zero = 0;
    FUZZ_CHECK(zmq_setsockopt(client, ZMQ_LINGER, &zero, sizeof zero) == 0);
    FUZZ_CHECK(zmq_connect(client, node->api_endpoint) == 0);

    bool wait = may_wait(data, size);
    json_t *r = request(client, data, size, wait ? WAIT_POLL_MS : REPLY_MS);
    /* 2 */
    FUZZ_CHECK(r != NULL || wait);
    /* 3 */
    json_t *req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(req)) {
        FUZZ_CHECK(r != NULL && json_is_false(json_object_get(r, "ok"))
            && json_integer_value(json_object_get(r, "exit")) == 2);
    }
    /* 4 */
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (r != NULL && json_is_true(json_object_get(r, "ok")) && cmd != NULL
        && (strcmp(cmd, "send") == 0 || strcmp(cmd, "reply") == 0)) {
        const char *id = json_string_value(json_object_get(r, "msg_id"));
        uint8_t raw[KETEN_MSG_ID_BYTES];
        FUZZ_CHECK(id != NULL && strlen(id) == 2 * KETEN_MSG_ID_BYTES
            && keten_unhex(id, raw, sizeof raw) == KETEN_OK);
        char status[128];
        int n = snprintf(status, sizeof status, "{\"cmd\":\"status\",\"msg_id\":\"%s\"}", id);
        FUZZ_CHECK(n > 0 && (size_t)n < sizeof status);
        json_t *s = request(client, status, (size_t)n, REPLY_MS);
        FUZZ_CHECK(s != NULL && json_is_true(json_object_get(s, "ok")));
        json_decref(s);
    }
    json_decref(req);
    json_decref(r);
    zmq_close(client);
    node_close();
    keten_err_clear();
    return 0;
}
