/*
 * link.h - the node's connection to the broker (docs/wire.md, "Socket and
 * authentication"): one ZeroMQ DEALER socket, a CurveZMQ client with the
 * node's own transport keys and the broker certificate's transport_pk,
 * reconnecting with backoff; a socket monitor tells when a handshake
 * succeeded (the link is up: the node then says Hello, sends its credit,
 * asks for newer directories and resends its outbox), failed, or the connection dropped.
 *
 * Every ZeroMQ message is one serialized Frame of at most
 * KETEN_NODE_FRAME_MAX bytes (libzmq drops the connection on a longer one:
 * ZMQ_MAXMSGSIZE, set to that plus KETEN_LINK_CURVE_OVERHEAD since libzmq
 * counts the encrypted command).
 *
 * Ownership: keten_link_destroy() closes both sockets; the zmq context is the
 * caller's. Frames from keten_link_recv() are freed with keten_pb_free().
 * Thread safety: one thread.
 */
#ifndef KETEN_NODE_LINK_H
#define KETEN_NODE_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "keten.h"

typedef struct keten_link keten_link;

#define KETEN_LINK_RECONNECT_MS 100
#define KETEN_LINK_RECONNECT_MAX_MS 5000
#define KETEN_LINK_HEARTBEAT_MS 5000
/* Longer than libzmq's longest retry interval and its handshake time-out
 * (ZMQ_HANDSHAKE_IVL, 30 s by default: a handshake the broker stalls gives
 * no event until then). */
#define KETEN_LINK_GIVEN_UP_MS 40000
/* The longest last error: the endpoint (at most 511 bytes) and its text. */
#define KETEN_LINK_ERROR_MAX 640
/* What CurveZMQ adds to a one-part message on the wire (keten.h). */
#define KETEN_LINK_CURVE_OVERHEAD KETEN_CURVE_OVERHEAD

/* What keten_link_on_monitor() saw. */
typedef enum keten_link_event {
    KETEN_LINK_NOTHING = 0,
    KETEN_LINK_UP = 1, /* a handshake succeeded */
    KETEN_LINK_DOWN = 2, /* the connection dropped or a handshake failed */
} keten_link_event;

keten_err keten_link_new(void *zctx, const char *endpoint, const keten_identity *me,
    const uint8_t server_pk[static KETEN_CURVE_KEY_BYTES], keten_link **out) KETEN_MUST_CHECK;
void keten_link_destroy(keten_link **self_p);

void *keten_link_socket(keten_link *self);
void *keten_link_monitor(keten_link *self);

/* Read one monitor event (call when the monitor socket is readable). */
keten_link_event keten_link_on_monitor(keten_link *self);

bool keten_link_connected(const keten_link *self);

/* The broker refused this node (alarm.h, keten_alarm_refused()): disconnect
 * and stop reconnecting (until the link is made again, at the next start);
 * why becomes the last error. */
void keten_link_stop(keten_link *self, const char *why);
bool keten_link_stopped(const keten_link *self);
/* libzmq gave the connection up: not connected, not stopped, and no sign of
 * a connection attempt (connected, delayed, retried, a handshake) for
 * KETEN_LINK_GIVEN_UP_MS. libzmq ends a connection for good, without
 * retrying, when the broker breaks the protocol (a frame over the limit,
 * ZMTP garbage); while it is still trying it reports a retry at least every
 * KETEN_LINK_RECONNECT_MAX_MS, or a handshake's end within 30 s. The daemon
 * then makes the link again. */
bool keten_link_given_up(const keten_link *self, uint64_t now_mono);
/* The last handshake ended with the broker refusing this node's key (its
 * ZAP handler: a key of no current certificate); false once one succeeds. */
bool keten_link_auth_refused(const keten_link *self);
/* Why the last connection attempt failed ("" if none, and once a handshake
 * succeeds): the broker refused the handshake (and why), or, when an
 * attempt reached nothing (libzmq retries without having connected),
 * "broker unreachable at ENDPOINT: no connection (refused, no route or
 * timed out); retrying" - cleared as soon as a connection is made. */
const char *keten_link_last_error(const keten_link *self);
/* How many handshakes succeeded since the link was made. */
uint64_t keten_link_connects(const keten_link *self);

/* Send a frame without blocking. KETEN_ERR_IO when it cannot be queued.
 * While a batch is held (below) the serialized frame is kept instead and
 * KETEN_OK returned (KETEN_ERR_TOO_LARGE and KETEN_ERR_NOMEM still can be). */
keten_err keten_link_send(keten_link *self, const Keten__Frame *frame) KETEN_MUST_CHECK;

/* Group commit (store.h): between keten_link_hold() and keten_link_release()
 * the frames the node sends are kept in order, because they may tell the
 * broker of changes not yet durable (a receipt batch, a submit). release with
 * committed=true sends them, in order, once the batch's commit succeeded;
 * with committed=false they are dropped and logged (the broker resends
 * whatever was not receipted or acknowledged), except that each leaf of a
 * dropped receipt batch returns its delivery's credit, as a failed delivery
 * does. Frames
 * the socket cannot queue when released are logged and dropped, as a failed
 * keten_link_send() is. The test hook KETEN_NODE_TEST_CRASH_BEFORE_RECEIPT=1
 * kills the process (SIGKILL) right before a receipt batch goes to the
 * socket, which is after its deliveries are durable (only in a build with
 * -Dtest_hooks=true). */
void keten_link_hold(keten_link *self);
void keten_link_release(keten_link *self, bool committed);

/* Receive one frame without blocking: KETEN_ERR_NOT_FOUND when none waits;
 * KETEN_ERR_MALFORMED / KETEN_ERR_TOO_LARGE for a bad frame (dropped). */
keten_err keten_link_recv(keten_link *self, Keten__Frame **out) KETEN_MUST_CHECK;

#endif
