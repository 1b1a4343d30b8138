#include "link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "node.h"
#include "pb.h"

struct keten_link {
    void *sock;
    void *monitor;
    bool connected;
    uint64_t connects;
    char last_error[128];
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
    keten_err e = KETEN_OK;
    int zero = 0;
    int ivl = KETEN_LINK_RECONNECT_MS;
    int ivl_max = KETEN_LINK_RECONNECT_MAX_MS;
    int hb = KETEN_LINK_HEARTBEAT_MS;
    int hb_timeout = 3 * KETEN_LINK_HEARTBEAT_MS;
    int64_t maxmsg = KETEN_NODE_FRAME_MAX;
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
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://keten-node-monitor-%p", (void *)self);
    if (zmq_socket_monitor(self->sock, mon,
            ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
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
    while (more) { /* the endpoint part */
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
    }
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        self->connected = true;
        self->connects++;
        self->last_error[0] = '\0';
        return KETEN_LINK_UP;
    case ZMQ_EVENT_DISCONNECTED:
        if (self->connected) {
            self->connected = false;
            return KETEN_LINK_DOWN;
        }
        return KETEN_LINK_NOTHING;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
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
    bool was = self->connected;
    self->connected = false;
    return was ? KETEN_LINK_DOWN : KETEN_LINK_NOTHING;
}

bool keten_link_connected(const keten_link *self)
{
    return self->connected;
}

const char *keten_link_last_error(const keten_link *self)
{
    return self->last_error;
}

uint64_t keten_link_connects(const keten_link *self)
{
    return self->connects;
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
    int rc = zmq_send(self->sock, buf, len, ZMQ_DONTWAIT);
    free(buf);
    if (rc < 0) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot queue a frame for the broker: %s", zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
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
