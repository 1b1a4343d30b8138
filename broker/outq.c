#include "outq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

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
    self->n_proofs = 0;
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

/* A new item at the end (zeroed but for the routing id), or NULL. */
static outq_item *grow(outq *self, const uint8_t *rid, size_t rid_len)
{
    if (self->n == self->cap) {
        size_t cap = self->cap == 0 ? 64 : self->cap * 2;
        outq_item *v = realloc(self->v, cap * sizeof *v);
        if (v == NULL) {
            keten_err_set(KETEN_ERR_NOMEM, "outgoing frame queue of %zu", cap);
            return NULL;
        }
        self->v = v;
        self->cap = cap;
    }
    outq_item *it = &self->v[self->n++];
    memset(it, 0, sizeof *it);
    memcpy(it->rid, rid, rid_len);
    it->rid_len = rid_len;
    return it;
}

/* Takes ownership of data (also on failure). */
static keten_err push(outq *self, const conn *c, uint8_t *data, size_t len)
{
    outq_item *it = grow(self, c->rid, c->rid_len);
    if (it == NULL) {
        free(data);
        return KETEN_ERR_NOMEM;
    }
    it->data = data;
    it->len = len;
    self->bytes += len;
    return KETEN_OK;
}

static keten_err pack(Keten__Frame *frame, uint8_t **buf, size_t *len)
{
    keten_err e = keten_pb_pack(&frame->base, buf, len);
    if (e != KETEN_OK) {
        return e;
    }
    if (*len > KETEN_FRAME_MAX) {
        free(*buf);
        *buf = NULL;
        return keten_err_set(KETEN_ERR_TOO_LARGE, "an outgoing frame of %zu bytes", *len);
    }
    return KETEN_OK;
}

keten_err outq_frame(outq *self, const conn *c, uint64_t request_id, Keten__Frame *frame)
{
    frame->request_id = request_id;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = pack(frame, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    return push(self, c, buf, len);
}

keten_err outq_answer(outq *self, conns *cs, const conn *c, uint64_t request_id,
    Keten__Frame *frame, uint64_t now_ms, bool *sent)
{
    *sent = false;
    frame->request_id = request_id;
    uint64_t len = protobuf_c_message_get_packed_size(&frame->base);
    uint64_t wait_ms = 0;
    keten_err e = conns_answer_take(cs, c->node, len, now_ms, sent, &wait_ms);
    if (e != KETEN_OK) {
        return e;
    }
    if (*sent) {
        return outq_frame(self, c, request_id, frame);
    }
    KETEN_LOG(KETEN_LOG_WARNING, "answer over the node's answer budget refused",
        "node=%s bytes=%llu wait_ms=%llu", c->node, (unsigned long long)len,
        (unsigned long long)wait_ms);
    char detail[160];
    snprintf(detail, sizeof detail,
        "answers of %llu MiB at once, then %llu MiB a second, to a node: this one of %llu bytes "
        "can go in %llu s; ask again then",
        (unsigned long long)(CONN_ANSWER_BYTES_BURST >> 20),
        (unsigned long long)(CONN_ANSWER_BYTES_PER_S >> 20), (unsigned long long)len,
        (unsigned long long)((wait_ms + 999) / 1000));
    return outq_error(self, c, request_id, KETEN__REASON__REASON_TOO_LARGE, NULL, detail, 0);
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

/* Short, printable, never content: detail lines name ids and codes only. */
static void clean_detail(const char *detail, char text[static DETAIL_MAX + 1])
{
    size_t n = 0;
    for (const char *p = detail != NULL ? detail : ""; *p != '\0' && n < DETAIL_MAX; p++) {
        unsigned char ch = (unsigned char)*p;
        text[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    text[n] = '\0';
}

keten_err outq_error(outq *self, const conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t *msg_id, const char *detail, uint32_t rule)
{
    Keten__Error err = KETEN__ERROR__INIT;
    Keten__Frame frame = KETEN__FRAME__INIT;
    char text[DETAIL_MAX + 1];
    err.reason = reason;
    if (msg_id != NULL) {
        err.msg_id.data = (uint8_t *)msg_id;
        err.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    clean_detail(detail, text);
    err.detail = text;
    err.rule = reason == KETEN__REASON__REASON_POLICY ? rule : 0;
    frame.body_case = KETEN__FRAME__BODY_ERROR;
    frame.error = &err;
    return outq_frame(self, c, request_id, &frame);
}

keten_err outq_refusal(
    outq *self, const conn *c, Keten__Reason reason, uint64_t version, const char *detail)
{
    Keten__Error err = KETEN__ERROR__INIT;
    Keten__Frame frame = KETEN__FRAME__INIT;
    char text[DETAIL_MAX + 1];
    err.reason = reason;
    clean_detail(detail, text);
    err.detail = text;
    err.directory_version = version;
    frame.body_case = KETEN__FRAME__BODY_ERROR;
    frame.error = &err;
    return outq_frame(self, c, 0, &frame);
}

/* A proof slot; data (owned, may be NULL) is its extra bytes. */
static keten_err slot(outq *self, conn *c, uint64_t request_id, enum outq_kind kind,
    uint64_t leaf, uint8_t *data, size_t len, outq_item **out)
{
    outq_item *it = grow(self, c->rid, c->rid_len);
    if (it == NULL) {
        free(data);
        return KETEN_ERR_NOMEM;
    }
    it->kind = kind;
    it->c = c;
    it->request_id = request_id;
    it->leaf = leaf;
    it->data = data;
    it->len = len;
    self->n_proofs++;
    if (out != NULL) {
        *out = it;
    }
    return KETEN_OK;
}

keten_err outq_proof(outq *self, conn *c, uint64_t request_id, enum outq_kind kind, uint64_t leaf)
{
    if (kind != OUTQ_SUBMIT_ACK && kind != OUTQ_RECEIPT_NOTICE && kind != OUTQ_EXPIRED_NOTICE) {
        return keten_err_set(KETEN_ERR_INVALID, "outq_proof of kind %d", (int)kind);
    }
    return slot(self, c, request_id, kind, leaf, NULL, 0, NULL);
}

/* An Error proof slot: its detail (cleaned) is the slot's data. */
static keten_err error_slot(outq *self, conn *c, uint64_t request_id, enum outq_kind kind,
    Keten__Reason reason, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *detail,
    uint32_t rule, uint64_t leaf)
{
    char *text = malloc(DETAIL_MAX + 1);
    if (text == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "an error detail");
    }
    clean_detail(detail, text);
    outq_item *it = NULL;
    keten_err e = slot(self, c, request_id, kind, leaf, (uint8_t *)text, strlen(text) + 1, &it);
    if (e == KETEN_OK) {
        memcpy(it->msg_id, msg_id, KETEN_MSG_ID_BYTES);
        it->reason = reason;
        it->rule = reason == KETEN__REASON__REASON_POLICY ? rule : 0;
    }
    return e;
}

keten_err outq_duplicate(outq *self, conn *c, uint64_t request_id,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *detail, uint64_t leaf)
{
    return error_slot(self, c, request_id, OUTQ_DUPLICATE, KETEN__REASON__REASON_DUPLICATE, msg_id,
        detail, 0, leaf);
}

keten_err outq_refused(outq *self, conn *c, uint64_t request_id, Keten__Reason reason,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], const char *detail, uint32_t rule,
    uint64_t leaf)
{
    return error_slot(self, c, request_id, OUTQ_REFUSED, reason, msg_id, detail, rule, leaf);
}

keten_err outq_deliver(outq *self, conn *c, const uint8_t *env, size_t env_len, uint64_t leaf)
{
    uint8_t *copy = malloc(env_len > 0 ? env_len : 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "a delivery of %zu bytes", env_len);
    }
    memcpy(copy, env, env_len);
    return slot(self, c, 0, OUTQ_DELIVER, leaf, copy, env_len, NULL);
}

/* The frame of a proof slot, with its proof. */
static keten_err build(const outq_item *it, const Keten__LeafProof *lp, uint8_t **buf, size_t *len)
{
    Keten__Frame f = KETEN__FRAME__INIT;
    Keten__SubmitAck sa = KETEN__SUBMIT_ACK__INIT;
    Keten__Error err = KETEN__ERROR__INIT;
    Keten__Deliver d = KETEN__DELIVER__INIT;
    Keten__ReceiptNotice rn = KETEN__RECEIPT_NOTICE__INIT;
    Keten__ExpiredNotice en = KETEN__EXPIRED_NOTICE__INIT;
    Keten__LeafProof *p = (Keten__LeafProof *)lp;
    f.request_id = it->request_id;
    switch (it->kind) {
    case OUTQ_SUBMIT_ACK:
        sa.proof = p;
        f.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
        f.submit_ack = &sa;
        break;
    case OUTQ_DUPLICATE:
    case OUTQ_REFUSED:
        err.reason = it->reason;
        err.rule = it->rule;
        err.msg_id.data = (uint8_t *)it->msg_id;
        err.msg_id.len = KETEN_MSG_ID_BYTES;
        err.detail = (char *)it->data;
        err.proof = p;
        f.body_case = KETEN__FRAME__BODY_ERROR;
        f.error = &err;
        break;
    case OUTQ_DELIVER:
        d.envelope.data = it->data;
        d.envelope.len = it->len;
        d.proof = p;
        f.body_case = KETEN__FRAME__BODY_DELIVER;
        f.deliver = &d;
        break;
    case OUTQ_RECEIPT_NOTICE:
        rn.proof = p;
        f.body_case = KETEN__FRAME__BODY_RECEIPT_NOTICE;
        f.receipt_notice = &rn;
        break;
    case OUTQ_EXPIRED_NOTICE:
        en.proof = p;
        f.body_case = KETEN__FRAME__BODY_EXPIRED;
        f.expired = &en;
        break;
    default:
        return keten_err_set(KETEN_ERR_INVALID, "a proof slot of kind %d", (int)it->kind);
    }
    return pack(&f, buf, len);
}

keten_err outq_prove(outq *self, const outq_prover *p)
{
    if (self->n_proofs == 0) {
        return KETEN_OK;
    }
    outq_item *old = self->v;
    size_t n = self->n;
    self->v = NULL;
    self->n = self->cap = 0;
    self->bytes = 0;
    self->n_proofs = 0;
    keten_err e = KETEN_OK;
    size_t i = 0;
    for (; i < n && e == KETEN_OK; i++) {
        outq_item *it = &old[i];
        if (it->kind == OUTQ_READY) {
            outq_item *to = grow(self, it->rid, it->rid_len);
            if (to == NULL) {
                e = KETEN_ERR_NOMEM;
                break;
            }
            *to = *it;
            self->bytes += it->len;
            it->data = NULL;
            continue;
        }
        conn *c = it->c;
        if (c == NULL || !c->hello || c->revoked) {
            continue; /* dropped below */
        }
        if (!c->cp_staged) {
            c->cp_staged = true;
            if ((e = p->checkpoints(p->ctx, self, c)) != KETEN_OK) {
                break;
            }
        }
        const Keten__LeafProof *lp = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        if ((e = p->proof(p->ctx, it->leaf, &lp)) != KETEN_OK
            || (e = build(it, lp, &buf, &len)) != KETEN_OK
            || (e = push(self, c, buf, len)) != KETEN_OK) {
            break;
        }
    }
    for (size_t j = 0; j < n; j++) {
        free(old[j].data);
    }
    free(old);
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
        if (it->data == NULL || it->kind != OUTQ_READY) {
            /* a proof slot never proven: the batch did not reach its end */
            KETEN_LOG(KETEN_LOG_ERR, "a frame without its proof was not sent", "leaf=%llu",
                (unsigned long long)it->leaf);
            continue;
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
