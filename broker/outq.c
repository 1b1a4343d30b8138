#include "outq.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "envelope.h"
#include "log.h"
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
    self->n_acks = 0;
}

void outq_destroy(outq **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    outq_clear(*self_p);
    free((*self_p)->acks);
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

keten_err outq_ack_later(outq *self, const conn *c, uint64_t request_id,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    const uint8_t envelope_hash[static KETEN_HASH_BYTES], uint64_t leaf)
{
    if (self->n_acks == self->cap_acks) {
        size_t cap = self->cap_acks == 0 ? 64 : self->cap_acks * 2;
        outq_ack *v = realloc(self->acks, cap * sizeof *v);
        if (v == NULL) {
            return keten_err_set(KETEN_ERR_NOMEM, "pending acks of %zu", cap);
        }
        self->acks = v;
        self->cap_acks = cap;
    }
    keten_err e = push(self, c, NULL, 0); /* the slot; filled when signed */
    if (e != KETEN_OK) {
        return e;
    }
    outq_ack *a = &self->acks[self->n_acks++];
    a->slot = self->n - 1;
    a->request_id = request_id;
    memcpy(a->msg_id, msg_id, KETEN_MSG_ID_BYTES);
    memcpy(a->envelope_hash, envelope_hash, KETEN_HASH_BYTES);
    a->leaf = leaf;
    a->e = KETEN_OK;
    return KETEN_OK;
}

size_t outq_sign_begin(
    outq *self, const char *network, const uint8_t log_sk[static KETEN_SIGN_SK_BYTES])
{
    self->network = network;
    self->log_sk = log_sk;
    return self->n_acks;
}

void outq_sign_one(outq *self, size_t i)
{
    outq_ack *a = &self->acks[i];
    uint8_t *ack = NULL;
    size_t ack_len = 0;
    Keten__Ack *parsed = NULL;
    a->e = keten_ack_sign(
        self->log_sk, self->network, a->msg_id, a->envelope_hash, a->leaf, &ack, &ack_len);
    if (a->e == KETEN_OK) {
        a->e = KETEN_PB_UNPACK(keten__ack, ack, ack_len, KETEN_RECEIPT_MAX, "ack", &parsed);
    }
    if (a->e == KETEN_OK) {
        Keten__SubmitAck sa = KETEN__SUBMIT_ACK__INIT;
        sa.ack = parsed;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.request_id = a->request_id;
        f.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
        f.submit_ack = &sa;
        outq_item *it = &self->v[a->slot];
        a->e = keten_pb_pack(&f.base, &it->data, &it->len);
    }
    if (a->e != KETEN_OK) {
        KETEN_LOG(KETEN_LOG_ERR, "an ack could not be signed; the sender's retry gets it",
            "leaf=%llu error=\"%s\" detail=\"%s\"", (unsigned long long)a->leaf,
            keten_strerror(a->e), keten_err_detail());
    }
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    free(ack);
}

size_t outq_sign_end(outq *self)
{
    size_t failed = 0;
    for (size_t i = 0; i < self->n_acks; i++) {
        if (self->acks[i].e != KETEN_OK) {
            failed++;
        } else {
            self->bytes += self->v[self->acks[i].slot].len;
        }
    }
    self->n_acks = 0;
    self->network = NULL;
    self->log_sk = NULL;
    return failed;
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
        if (it->data == NULL) {
            continue; /* an ack that could not be signed */
        }
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
