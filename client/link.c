#include "link.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "log.h"
#include "node.h"
#include "pb.h"
#include "util.h"

/* A frame kept while a batch is held. */
typedef struct held_frame {
    uint8_t *buf;
    size_t len;
    uint32_t receipts; /* leaves of a receipt batch (each returns a credit) */
} held_frame;

struct keten_link {
    void *sock;
    void *monitor;
    bool connected;
    bool stopped; /* keten_link_stop(): no reconnecting */
    uint64_t last_event; /* mono ms of the last monitor event (or of the link's making) */
    char endpoint[512];
    uint64_t connects;
    char last_error[KETEN_LINK_ERROR_MAX];
    bool reached; /* a TCP/IPC connection was made since the last retry */
    bool unreachable; /* last_error says the broker is unreachable */
    bool auth_refused; /* the last handshake: the broker refused this node's key */
    bool holding;
    held_frame *held;
    size_t n_held, cap_held;
};

static keten_err zmq_fail(const char *what)
{
    return keten_err_set(KETEN_ERR_IO, "%s: %s", what, zmq_strerror(zmq_errno()));
}

keten_err keten_link_new(void *zctx, const char *endpoint, const keten_identity *me,
    const uint8_t server_pk[static KETEN_CURVE_KEY_BYTES], keten_link **out)
{
    *out = NULL;
    keten_link *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return KETEN_ERR_NOMEM;
    }
    self->last_event = keten_mono_ms();
    keten_err e = KETEN_OK;
    int zero = 0;
    int ivl = KETEN_LINK_RECONNECT_MS;
    int ivl_max = KETEN_LINK_RECONNECT_MAX_MS;
    int hb = KETEN_LINK_HEARTBEAT_MS;
    int hb_timeout = 3 * KETEN_LINK_HEARTBEAT_MS;
    /* ZMQ_MAXMSGSIZE limits what libzmq reads off the wire, and over CURVE
     * each message is a MESSAGE command of the frame's size plus
     * KETEN_LINK_CURVE_OVERHEAD: a frame of exactly KETEN_NODE_FRAME_MAX
     * bytes must still pass, one byte more must not. */
    int64_t maxmsg = (int64_t)KETEN_NODE_FRAME_MAX + KETEN_LINK_CURVE_OVERHEAD;
    self->sock = zmq_socket(zctx, ZMQ_DEALER);
    if (self->sock == NULL) {
        e = zmq_fail("zmq_socket(DEALER)");
        goto out;
    }
    if (zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) != 0
        || zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) != 0
        || zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb) != 0
        || zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout) != 0
        || zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0
        || zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, server_pk, KETEN_CURVE_KEY_BYTES) != 0
        || zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, me->transport_pk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, me->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0) {
        e = zmq_fail("zmq_setsockopt on the broker socket");
        goto out;
    }
    /* A name of its own for each link: a link made again (keten_link_given_up)
     * may be allocated where the last one was, and libzmq unbinds the old
     * monitor's endpoint only after it is closed. */
    static uint64_t links_made;
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://keten-node-monitor-%llu", (unsigned long long)++links_made);
    if (zmq_socket_monitor(self->sock, mon,
            ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_DELAYED | ZMQ_EVENT_CONNECT_RETRIED)
        != 0) {
        e = zmq_fail("zmq_socket_monitor");
        goto out;
    }
    self->monitor = zmq_socket(zctx, ZMQ_PAIR);
    if (self->monitor == NULL || zmq_setsockopt(self->monitor, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_connect(self->monitor, mon) != 0) {
        e = zmq_fail("connecting the socket monitor");
        goto out;
    }
    if (snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint)
        >= (int)sizeof self->endpoint) {
        e = keten_err_set(KETEN_ERR_INVALID, "broker endpoint %s is too long", endpoint);
        goto out;
    }
    if (zmq_connect(self->sock, endpoint) != 0) {
        e = keten_err_set(KETEN_ERR_INVALID, "cannot connect to broker endpoint %s: %s", endpoint,
            zmq_strerror(zmq_errno()));
        goto out;
    }
    *out = self;
    self = NULL;
out:
    keten_link_destroy(&self);
    return e;
}

void keten_link_destroy(keten_link **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    keten_link *self = *self_p;
    if (self->sock != NULL) {
        (void)zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->sock);
    }
    if (self->monitor != NULL) {
        zmq_close(self->monitor);
    }
    for (size_t i = 0; i < self->n_held; i++) {
        free(self->held[i].buf);
    }
    free(self->held);
    free(self);
    *self_p = NULL;
}

void *keten_link_socket(keten_link *self)
{
    return self->sock;
}

void *keten_link_monitor(keten_link *self)
{
    return self->monitor;
}

keten_link_event keten_link_on_monitor(keten_link *self)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, self->monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return KETEN_LINK_NOTHING;
    }
    uint16_t event = 0;
    uint32_t value = 0;
    if (zmq_msg_size(&msg) >= 6) {
        const uint8_t *d = zmq_msg_data(&msg);
        memcpy(&event, d, sizeof event);
        memcpy(&value, d + 2, sizeof value);
    }
    bool more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
    self->last_event = keten_mono_ms();
    while (more) { /* the endpoint part */
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
    }
    if (self->stopped) {
        return KETEN_LINK_NOTHING; /* the last error stays the refusal */
    }
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        self->auth_refused = false;
        self->connected = true;
        self->connects++;
        self->last_error[0] = '\0';
        self->unreachable = false;
        return KETEN_LINK_UP;
    case ZMQ_EVENT_CONNECTED:
        /* Reached: whatever the handshake then says is the error. */
        self->reached = true;
        if (self->unreachable) {
            self->last_error[0] = '\0';
            self->unreachable = false;
        }
        return KETEN_LINK_NOTHING;
    case ZMQ_EVENT_CONNECT_RETRIED:
        /* libzmq retries after an attempt that reached nothing (refused,
         * no route, timed out: it does not say which), and also after a
         * connection that ended (a refused handshake): only the first is
         * "unreachable", the second keeps the handshake's error. */
        if (!self->reached && !self->connected) {
            snprintf(self->last_error, sizeof self->last_error,
                "broker unreachable at %s: no connection (refused, no route or timed out); "
                "retrying",
                self->endpoint);
            self->unreachable = true;
        }
        self->reached = false;
        return KETEN_LINK_NOTHING;
    case ZMQ_EVENT_DISCONNECTED:
        if (self->connected) {
            self->connected = false;
            return KETEN_LINK_DOWN;
        }
        return KETEN_LINK_NOTHING;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        self->auth_refused = true;
        snprintf(self->last_error, sizeof self->last_error,
            "the broker refused this node's key (status %u): not a current node of the "
            "broker's directory, or revoked",
            (unsigned)value);
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        snprintf(self->last_error, sizeof self->last_error,
            "CurveZMQ handshake with the broker failed (protocol error %u)", (unsigned)value);
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf(self->last_error, sizeof self->last_error,
            "CurveZMQ handshake with the broker failed: wrong broker key or refused");
        break;
    default:
        return KETEN_LINK_NOTHING;
    }
    self->unreachable = false;
    bool was = self->connected;
    self->connected = false;
    return was ? KETEN_LINK_DOWN : KETEN_LINK_NOTHING;
}

bool keten_link_connected(const keten_link *self)
{
    return self->connected;
}

void keten_link_stop(keten_link *self, const char *why)
{
    if (!self->stopped && zmq_disconnect(self->sock, self->endpoint) != 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot disconnect from the broker", "error=\"%s\"",
            zmq_strerror(zmq_errno()));
    }
    self->stopped = true;
    self->connected = false;
    self->unreachable = false;
    snprintf(self->last_error, sizeof self->last_error, "%s", why);
}

bool keten_link_stopped(const keten_link *self)
{
    return self->stopped;
}

bool keten_link_auth_refused(const keten_link *self)
{
    return self->auth_refused;
}

/* KETEN_LINK_GIVEN_UP_MS; in a build with test hooks
 * KETEN_NODE_TEST_GIVEN_UP_MS=N (ms) replaces it, so that a test need not
 * wait 40 s for the link to be made again. */
static uint64_t given_up_ms(void)
{
#ifdef KETEN_TEST_HOOKS
    const char *v = getenv("KETEN_NODE_TEST_GIVEN_UP_MS");
    uint64_t ms = 0;
    if (v != NULL && keten_cli_parse_uint(v, 1, KETEN_LINK_GIVEN_UP_MS, &ms)) {
        return ms;
    }
#endif
    return KETEN_LINK_GIVEN_UP_MS;
}

bool keten_link_given_up(const keten_link *self, uint64_t now_mono)
{
    return !self->connected && !self->stopped && now_mono >= self->last_event
        && now_mono - self->last_event >= given_up_ms();
}

const char *keten_link_last_error(const keten_link *self)
{
    return self->last_error;
}

uint64_t keten_link_connects(const keten_link *self)
{
    return self->connects;
}

/* The test hook of keten_link_hold()'s contract (only in a build with
 * -Dtest_hooks=true). */
static void crash_before_receipt(void)
{
#ifdef KETEN_TEST_HOOKS
    const char *crash = getenv("KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT");
    if (crash != NULL && strcmp(crash, "1") == 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "test crash before receipt", "stored=durable");
        raise(SIGKILL);
    }
#endif
}

static keten_err send_packed(keten_link *self, const uint8_t *buf, size_t len, uint32_t receipts)
{
    if (receipts > 0) {
        crash_before_receipt();
    }
    if (zmq_send(self->sock, buf, len, ZMQ_DONTWAIT) < 0) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot queue a frame for the broker: %s", zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

static keten_err hold_packed(keten_link *self, uint8_t *buf, size_t len, uint32_t receipts)
{
    if (self->n_held == self->cap_held) {
        size_t cap = self->cap_held == 0 ? 64 : 2 * self->cap_held;
        held_frame *h = realloc(self->held, cap * sizeof *h);
        if (h == NULL) {
            free(buf);
            return KETEN_ERR_NOMEM;
        }
        self->held = h;
        self->cap_held = cap;
    }
    self->held[self->n_held++] = (held_frame) { .buf = buf, .len = len, .receipts = receipts };
    return KETEN_OK;
}

keten_err keten_link_send(keten_link *self, const Keten__Frame *frame)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack((const ProtobufCMessage *)frame, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    if (len > KETEN_NODE_FRAME_MAX) {
        free(buf);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "frame of %zu bytes is over the cap", len);
    }
    uint32_t receipts = frame->body_case == KETEN__FRAME__BODY_RECEIPTS && frame->receipts != NULL
        ? (uint32_t)frame->receipts->n_leaves
        : 0;
    if (self->holding) {
        return hold_packed(self, buf, len, receipts);
    }
    e = send_packed(self, buf, len, receipts);
    free(buf);
    return e;
}

void keten_link_hold(keten_link *self)
{
    self->holding = true;
}

/* A Credit frame returning n. */
static void return_credit(keten_link *self, uint32_t n)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = n;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    if (keten_link_send(self, &f) != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_WARNING, "cannot return credit", "error=\"%s\"", keten_err_detail());
    }
}

void keten_link_release(keten_link *self, bool committed)
{
    self->holding = false;
    size_t failed = 0, receipts = 0;
    for (size_t i = 0; i < self->n_held; i++) {
        held_frame *h = &self->held[i];
        if (!committed) {
            receipts += h->receipts;
        } else if (send_packed(self, h->buf, h->len, h->receipts) != KETEN_OK) {
            failed++;
        }
        free(h->buf);
        h->buf = NULL;
    }
    if (!committed && self->n_held > 0) {
        KETEN_LOG(KETEN_LOG_ERR,
            "store commit failed; frames for the broker dropped (it sends again what was not "
            "receipted or acknowledged)",
            "frames=%zu receipts=%zu", self->n_held, receipts);
    } else if (failed > 0) {
        KETEN_LOG(KETEN_LOG_WARNING, "frames for the broker not sent", "frames=%zu error=\"%s\"",
            failed, keten_err_detail());
    }
    self->n_held = 0;
    if (receipts > 0) {
        return_credit(self, (uint32_t)receipts);
    }
}

keten_err keten_link_recv(keten_link *self, Keten__Frame **out)
{
    *out = NULL;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        return zmq_errno() == EAGAIN ? KETEN_ERR_NOT_FOUND
                                     : keten_err_set(KETEN_ERR_IO, "receiving from the broker: %s",
                                         zmq_strerror(zmq_errno()));
    }
    bool more = zmq_msg_more(&msg);
    keten_err e = KETEN_OK;
    if (more) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "a message from the broker has several parts");
        while (more) {
            zmq_msg_close(&msg);
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, self->sock, ZMQ_DONTWAIT) < 0) {
                break;
            }
            more = zmq_msg_more(&msg);
        }
    } else {
        e = KETEN_PB_UNPACK(keten__frame, zmq_msg_data(&msg), zmq_msg_size(&msg),
            KETEN_NODE_FRAME_MAX, "frame from the broker", out);
    }
    zmq_msg_close(&msg);
    return e;
}
