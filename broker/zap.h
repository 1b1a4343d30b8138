/*
 * zap.h - the broker's ZAP handler (RFC 27/ZAP): who may connect.
 *
 * The handler's REP socket is bound on inproc://zeromq.zap.01 before the
 * ROUTER binds (without a handler libzmq admits every CURVE client) and is
 * polled by the main loop. A CURVE client is admitted only when its
 * transport key belongs to a current, unrevoked partner certificate of the
 * installed directory that is valid now (never the broker's own); the reply
 * names the node as User-Id and carries the admitted key as metadata
 * property "X-Key" (hex), which the main loop checks on every frame against
 * the directory then in force. Anything else gets status 400.
 *
 * Every refusal is audited as auth-failed with the key's hex as node (one
 * record per key per ZAP_AUDIT_INTERVAL_MS, so a client retrying in a loop
 * cannot flood the log; the metric counts every refusal).
 *
 * Single-threaded (main loop).
 */
#ifndef KETEN_BROKER_ZAP_H
#define KETEN_BROKER_ZAP_H

#include <stdint.h>

#include "broker.h"
#include "err.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_KEY_PROPERTY "X-Key"
#define ZAP_AUDIT_INTERVAL_MS 60000
#define ZAP_RECENT 64

typedef struct zap {
    struct {
        uint8_t key[KETEN_CURVE_KEY_BYTES];
        uint64_t at;
    } recent[ZAP_RECENT];
    size_t next;
} zap;

/* Answer one pending ZAP request on sock (a bound REP socket). */
keten_err zap_handle(zap *z, broker *b, void *sock) KETEN_MUST_CHECK;

#endif
