#include "zap.h"

#include <string.h>
#include <zmq.h>

#include "dirstate.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define ZAP_PARTS_MAX 10
#define ZAP_FIELD_MAX 256

typedef struct zap_part {
    uint8_t data[ZAP_FIELD_MAX];
    size_t len;
} zap_part;

/* Read every part of one request; parts beyond the first ZAP_PARTS_MAX and
 * bytes beyond ZAP_FIELD_MAX are dropped (and make the request invalid). */
static keten_err read_request(void *sock, zap_part *parts, size_t *n, bool *oversize)
{
    *n = 0;
    *oversize = false;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (*n == 0 && zmq_errno() == EAGAIN) {
                return KETEN_ERR_NOT_FOUND;
            }
            return keten_err_set(
                KETEN_ERR_IO, "reading a ZAP request: %s", zmq_strerror(zmq_errno()));
        }
        more = zmq_msg_more(&m);
        size_t len = zmq_msg_size(&m);
        if (*n < ZAP_PARTS_MAX && len <= ZAP_FIELD_MAX) {
            memcpy(parts[*n].data, zmq_msg_data(&m), len);
            parts[*n].len = len;
            (*n)++;
        } else {
            *oversize = true;
        }
        zmq_msg_close(&m);
    }
    return KETEN_OK;
}

static bool part_is(const zap_part *p, const char *s)
{
    return p->len == strlen(s) && memcmp(p->data, s, p->len) == 0;
}

static keten_err reply(void *sock, const zap_part *request_id, const char *status, const char *text,
    const char *user_id, const uint8_t *key)
{
    uint8_t meta[1 + sizeof ZAP_KEY_PROPERTY + 4 + 2 * KETEN_CURVE_KEY_BYTES];
    size_t meta_len = 0;
    if (key != NULL) {
        size_t nlen = strlen(ZAP_KEY_PROPERTY);
        meta[meta_len++] = (uint8_t)nlen;
        memcpy(meta + meta_len, ZAP_KEY_PROPERTY, nlen);
        meta_len += nlen;
        meta[meta_len++] = 0;
        meta[meta_len++] = 0;
        meta[meta_len++] = 0;
        meta[meta_len++] = 2 * KETEN_CURVE_KEY_BYTES;
        char hex[2 * KETEN_CURVE_KEY_BYTES + 1];
        keten_hex(key, KETEN_CURVE_KEY_BYTES, hex);
        memcpy(meta + meta_len, hex, 2 * KETEN_CURVE_KEY_BYTES);
        meta_len += 2 * KETEN_CURVE_KEY_BYTES;
    }
    if (zmq_send(sock, "1.0", 3, ZMQ_SNDMORE) < 0
        || zmq_send(sock, request_id->data, request_id->len, ZMQ_SNDMORE) < 0
        || zmq_send(sock, status, strlen(status), ZMQ_SNDMORE) < 0
        || zmq_send(sock, text, strlen(text), ZMQ_SNDMORE) < 0
        || zmq_send(sock, user_id, strlen(user_id), ZMQ_SNDMORE) < 0
        || zmq_send(sock, meta, meta_len, 0) < 0) {
        return keten_err_set(
            KETEN_ERR_IO, "answering a ZAP request: %s", zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

/* Audit a refused key unless it was audited within the interval. */
static void refused(zap *z, broker *b, const uint8_t *key, const char *why)
{
    char hex[2 * KETEN_CURVE_KEY_BYTES + 1] = "unknown";
    metrics_auth_failed(b->m);
    if (key != NULL) {
        keten_hex(key, KETEN_CURVE_KEY_BYTES, hex);
        uint64_t now = keten_mono_ms();
        for (size_t i = 0; i < ZAP_RECENT; i++) {
            if (z->recent[i].at != 0 && now - z->recent[i].at < ZAP_AUDIT_INTERVAL_MS
                && memcmp(z->recent[i].key, key, KETEN_CURVE_KEY_BYTES) == 0) {
                return;
            }
        }
        memcpy(z->recent[z->next].key, key, KETEN_CURVE_KEY_BYTES);
        z->recent[z->next].at = now == 0 ? 1 : now;
        z->next = (z->next + 1) % ZAP_RECENT;
    }
    KETEN_LOG(KETEN_LOG_WARNING, "connection refused", "key=%s why=\"%s\"", hex, why);
    broker_event_add(b, KETEN__EVENT__EVENT_AUTH_FAILED, hex);
}

keten_err zap_handle(zap *z, broker *b, void *sock)
{
    zap_part parts[ZAP_PARTS_MAX];
    size_t n = 0;
    bool oversize = false;
    keten_err e = read_request(sock, parts, &n, &oversize);
    if (e == KETEN_ERR_NOT_FOUND) {
        return KETEN_OK;
    }
    if (e != KETEN_OK) {
        return e;
    }
    /* version, request id, domain, address, routing id, mechanism, credentials */
    if (n < 2) {
        static const zap_part none = { { 0 }, 0 };
        refused(z, b, NULL, "malformed ZAP request");
        return reply(sock, &none, "500", "malformed request", "", NULL);
    }
    if (oversize || n != 7 || !part_is(&parts[0], "1.0") || !part_is(&parts[5], "CURVE")
        || parts[6].len != KETEN_CURVE_KEY_BYTES) {
        refused(z, b, NULL, "not a CURVE client");
        return reply(sock, &parts[1], "400", "CURVE only", "", NULL);
    }
    const uint8_t *key = parts[6].data;
    const keten_directory *dir = broker_dir(b);
    const Keten__NodeCert *cert = keten_directory_find_transport(dir, key);
    const char *why = NULL;
    uint64_t now = keten_now_ms();
    if (cert == NULL) {
        why = "transport key of no current certificate";
    } else if (dirstate_node_cert(dir, cert->id, key, now) == NULL) {
        why = "certificate not valid now, or the broker's own key";
    }
    if (why != NULL) {
        refused(z, b, key, why);
        return reply(sock, &parts[1], "400", "not admitted", "", NULL);
    }
    KETEN_LOG(KETEN_LOG_DEBUG, "connection admitted", "node=%s", cert->id);
    return reply(sock, &parts[1], "200", "OK", cert->id, key);
}
