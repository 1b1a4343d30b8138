#include "outq.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "pb.h"

#define DETAIL_MAX 200

outq *outq_new(void)
{
    return calloc(1, sizeof(outq));
}

void outq_clear(outq *self)
{
    for (size_t i = 0; i < self->n; i++) {
        free(self->v[i].data);
    }
    self->n = 0;
    self->bytes = 0;
}

void outq_destroy(outq **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    outq_clear(*self_p);
    free((*self_p)->v);
    free(*self_p);
    *self_p = NULL;
}

/* Takes ownership of data (also on failure). */
static keten_err push(outq *self, const conn *c, uint8_t *data, size_t len)
{
    if (self->n == self->cap) {
        size_t cap = self->cap == 0 ? 64 : self->cap * 2;
        outq_item *v = realloc(self->v, cap * sizeof *v);
        if (v == NULL) {
            free(data);
            return keten_err_set(KETEN_ERR_NOMEM, "outgoing frame queue of %zu", cap);
        }
        self->v = v;
        self->cap = cap;
    }
    outq_item *it = &self->v[self->n++];
    memcpy(it->rid, c->rid, c->rid_len);
    it->rid_len = c->rid_len;
    it->data = data;
    it->len = len;
    self->bytes += len;
    return KETEN_OK;
}

keten_err outq_frame(outq *self, const conn *c, uint64_t request_id, Keten__Frame *frame)
{
    frame->request_id = request_id;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&frame->base, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    if (len > KETEN_FRAME_MAX) {
        free(buf);
        return keten_err_set(KETEN_ERR_TOO_LARGE, "an outgoing frame of %zu bytes", len);
    }
    return push(self, c, buf, len);
}

keten_err outq_raw(outq *self, const conn *c, const uint8_t *data, size_t len)
{
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "an outgoing frame of %zu bytes", len);
    }
    memcpy(buf, data, len);
    return push(self, c, buf, len);
}

keten_err outq_error(outq *self, const conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t *msg_id, const char *detail, uint32_t rule, const uint8_t *ack, size_t ack_len)
{
    Keten__Error err = KETEN__ERROR__INIT;
    Keten__Frame frame = KETEN__FRAME__INIT;
    Keten__Ack *parsed = NULL;
    char text[DETAIL_MAX + 1];
    err.reason = reason;
    if (msg_id != NULL) {
        err.msg_id.data = (uint8_t *)msg_id;
        err.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    /* Short, printable, never content: detail lines name ids and codes only. */
    size_t n = 0;
    for (const char *p = detail != NULL ? detail : ""; *p != '\0' && n < DETAIL_MAX; p++) {
        unsigned char ch = (unsigned char)*p;
        text[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    text[n] = '\0';
    err.detail = text;
    err.rule = reason == KETEN__REASON__REASON_POLICY ? rule : 0;
    if (ack != NULL) {
        keten_err e = KETEN_PB_UNPACK(keten__ack, ack, ack_len, KETEN_ENVELOPE_MAX, "ack", &parsed);
        if (e != KETEN_OK) {
            return e;
        }
        err.ack = parsed;
    }
    frame.body_case = KETEN__FRAME__BODY_ERROR;
    frame.error = &err;
    keten_err e = outq_frame(self, c, request_id, &frame);
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    return e;
}

static void free_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

size_t outq_flush(outq *self, void *router)
{
    size_t sent = 0;
    for (size_t i = 0; i < self->n; i++) {
        outq_item *it = &self->v[i];
        zmq_msg_t m;
        if (zmq_msg_init_data(&m, it->data, it->len, free_data, NULL) != 0) {
            continue;
        }
        it->data = NULL; /* libzmq owns it now */
        /* With ROUTER_MANDATORY off, an unroutable peer or a full queue drops
         * the message silently; the routing part is then never left open. */
        if (zmq_send(router, it->rid, it->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        if (zmq_msg_send(&m, router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        sent++;
    }
    outq_clear(self);
    return sent;
}
