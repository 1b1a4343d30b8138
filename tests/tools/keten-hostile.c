/*
 * keten-hostile - raw-socket hostile actions against a keten-broker (and one
 * against a keten-node), for the hostile-input integration tests
 * (tests/integration/hostile_*.sh). Never for production.
 *
 *   keten-hostile ACTION [OPTIONS]
 *
 * Every action prints what happened as JSON lines on standard output (one
 * object per line, "event" first), so the tests can assert on them.
 *
 * Client actions connect to --broker ENDPOINT. They need --anchor FILE and
 * --directory FILE (for the broker's transport key) and, except `plain`,
 * `unlisted-key` and `raw-socket`, --home DIR (the node whose CurveZMQ keys
 * are used). --timeout-ms T (default 10000) bounds every wait.
 *
 *   flood --to IDS --json FILE --count N [--kind K] [--credit C] [--hold-ms T]
 *         [--drain-ms T]
 *       seal N distinct envelopes first, then send them as submits as fast as
 *       the broker takes them (after a Hello) and NEVER read (receive high-water mark 1, so
 *       libzmq stops reading the socket and the broker's send queue to this
 *       peer fills up); with --credit, first grant C deliveries that are then
 *       never read. Prints "flooded" (sent, ms). Then holds the connection
 *       --hold-ms without reading, and finally reads for --drain-ms and prints
 *       "drained" with how many frames (and Error frames) were still there
 *       to read; --drain-errors N ends the drain once N Error frames came. What was
 *       queued is still sent when the socket closes (ZMQ_LINGER is the
 *       --timeout-ms, which also bounds each blocking send).
 *   flood --junk-bytes B --count N [--hold-ms T]
 *       the same with N submits whose "envelope" is B random bytes.
 *   frame --kind KIND [--listen-ms T]
 *       send ONE hostile ZeroMQ message, then a control request on the same
 *       socket (directory_request, request_id 99), and print every frame and
 *       every socket event seen, for --listen-ms at most: it stops once the
 *       control request is answered and the hostile message was answered
 *       with an error or got the connection dropped; "summary" at the end.
 *       KIND:
 *         oversize       KETEN_FRAME_MAX + 1 bytes (libzmq must drop the peer)
 *         sized          a submit Frame of exactly --bytes N bytes (zeros as the
 *                        envelope); CurveZMQ adds 33 bytes on the wire
 *                        (command name, nonce, flags, MAC), and ZMQ_MAXMSGSIZE
 *                        counts those too
 *         multipart      two parts, each a valid credit Frame
 *         empty          a message of zero bytes
 *         no-body        a Frame with a request_id and no body
 *         unknown-field  a credit Frame followed by field 1000
 *         nested-unknown a credit Frame whose Credit carries field 15 (unknown)
 *         truncated      the first half of a submit Frame
 *         huge-length    a submit field whose length says 2 GiB, 10 bytes follow
 *         not-protobuf   0xff bytes
 *         broker-frame   a Deliver frame (only the broker sends those)
 *         empty-submit   a submit Frame with an empty envelope
 *       (sized, truncated and empty-submit are sent after a Hello, as a node
 *       sends its submits; the others without one)
 *   plain [--listen-ms T]
 *       a DEALER with NO security mechanism (ZMTP NULL): sends a credit
 *       frame and a directory_request; prints what it gets (nothing expected).
 *   wrong-server-key [--listen-ms T]
 *       a CurveZMQ client with the node's real keys but a random server key.
 *   unlisted-key [--sockets N] [--listen-ms T]
 *       N CurveZMQ clients, each with a fresh random key pair that no
 *       directory lists (the right server key), reconnecting every 10 ms for
 *       --listen-ms: what an unauthenticated network attacker can make the
 *       broker's ZAP handler see. Prints the summary over all N.
 *   raw-socket --bytes N [--listen-ms T]
 *       connect a plain stream socket to the ipc:// or tcp:// endpoint, write
 *       N random bytes (no ZMTP greeting), print what came back and whether
 *       the broker closed the connection.
 *
 * Broker-side action (against a real keten-node):
 *   fake-broker --home BROKER_HOME --anchor FILE --directory FILE
 *               --listen ENDPOINT --log DIR
 *               (--deliver FILE | --deliver-bad-proof FILE)... [--timeout-ms T]
 *       a CurveZMQ server with the broker's transport key (so the node
 *       connects), no ZAP handler, and a real Merkle log in DIR (the broker
 *       store's two log tables, LMDB), kept between runs. Prints "ready",
 *       waits for the node's Hello ("hello": its tree_size; nothing is sent
 *       before it), then appends in one transaction the "submitted" record
 *       of each envelope file (as the broker writes it, as far as the file
 *       parses) that the log does not hold yet - an envelope delivered again
 *       is proven by its one record, as the broker redelivers ("record":
 *       file, msg_id, leaf, new; "log": old_size, size). It signs the
 *       checkpoint of the new size with the broker's log key and sends it
 *       with the consistency proof from the Hello's size ("checkpoint":
 *       size, old_size, consistency = number of hashes; not sent when the
 *       node holds that size already; a later Hello is answered the same
 *       way). Then it delivers each envelope in turn with the proof of its
 *       record against that checkpoint - --deliver-bad-proof with the first
 *       hash of the path changed, so it does not lead to the signed root -
 *       and prints "answer" for each (index, file, msg_id, bad_proof,
 *       answer): "stored" or "refused" (the receipt batch leaf naming the
 *       message, with "reason" and "receipt_valid": whether the batch
 *       verifies under the recipient's certificate), "credit" (the node
 *       returned its credit without a leaf) or "none" (timeout). Every
 *       receipt batch leaf seen is also printed as "leaf" (msg_id, outcome,
 *       reason, batch_valid), also those that come after the answer, until
 *       500 ms after the last delivery ("done").
 *
 * Exit code: 0 when the action ran (the results are in the JSON), 1 when it
 * could not run, 2 for usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "checkpoint.h"
#include "cli.h"
#include "directory.h"
#include "envelope.h"
#include "identity.h"
#include "keten.h"
#include "logproof.h"
#include "merkle.h"
#include "pb.h"
#include "policy.h"
#include "receipt.h"
#include "signal_json.h"
#include "util.h"

#define HOSTILE_TIMEOUT_DEFAULT_MS 10000
#define HOSTILE_LISTEN_DEFAULT_MS 1500
#define HOSTILE_COUNT_MAX 200000
#define HOSTILE_DELIVER_MAX 32
#define HOSTILE_SOCKETS_MAX 256
#define HOSTILE_STORM_RECONNECT_MS 10
#define HOSTILE_CONTROL_RID 99
#define HOSTILE_CONTROL_DELAY_MS 300
#define HOSTILE_SETTLE_MS 500
#define HOSTILE_RAW_MAX (64u << 20)
#define HOSTILE_LIFETIME_MS (24ull * 3600ull * 1000ull)
#define MONITOR_ENDPOINT "inproc://keten-hostile-monitor"

typedef enum sec_mode { SEC_CURVE, SEC_CURVE_WRONG_SERVER, SEC_CURVE_UNLISTED, SEC_PLAIN } sec_mode;

typedef struct hostile {
    const char *home, *anchor_path, *dir_path, *broker, *listen;
    uint64_t timeout_ms, listen_ms;
    keten_identity *me;
    Keten__Anchor *anchor;
    keten_directory *dir;
    const Keten__NodeCert *broker_cert;
    void *ctx, *sock, *mon;
    /* what was seen */
    size_t frames, errors, control_answers;
    size_t ev_connected, ev_disconnected, ev_hs_ok, ev_hs_failed, ev_closed;
    bool quiet; /* count socket events without printing each */
    const char *last_failure; /* the last handshake failure event, and its value */
    uint32_t last_failure_value;
} hostile;

/* ---- output ------------------------------------------------------------ */

static void emit(json_t *obj)
{
    if (obj == NULL) {
        return;
    }
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(obj);
}

static int fail(keten_err e, const char *what)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("failure"));
    json_object_set_new(o, "what", json_string(what));
    json_object_set_new(o, "error", json_string(keten_err_str(e)));
    json_object_set_new(o, "detail", json_string(keten_err_detail()));
    emit(o);
    return 1;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, const char *prefix)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    if (ev == NULL) {
        return "UNKNOWN";
    }
    size_t n = strlen(prefix);
    return strncmp(ev->name, prefix, n) == 0 ? ev->name + n : ev->name;
}

/* ---- set-up ------------------------------------------------------------ */

static keten_err load_identity(const char *home, keten_identity **out)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/identity.secret", home) >= (int)sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "home path %s is too long", home);
    }
    return keten_cli_identity_open(path, NULL, out);
}

static keten_err load(hostile *h, bool need_identity)
{
    keten_err e;
    if (h->anchor_path == NULL || h->dir_path == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "--anchor and --directory are needed");
    }
    if ((e = keten_directory_anchor_load(h->anchor_path, &h->anchor)) != KETEN_OK
        || (e = keten_directory_load(h->anchor, h->dir_path, keten_now_ms(), &h->dir))
            != KETEN_OK) {
        return e;
    }
    h->broker_cert = keten_directory_broker(h->dir);
    if (h->broker_cert == NULL || h->broker_cert->transport_pk.len != KETEN_CURVE_KEY_BYTES) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "the directory lists no broker");
    }
    if (need_identity) {
        if (h->home == NULL) {
            return keten_err_set(KETEN_ERR_INVALID, "--home is needed");
        }
        return load_identity(h->home, &h->me);
    }
    return KETEN_OK;
}

static keten_err zfail(const char *what)
{
    return keten_err_set(KETEN_ERR_IO, "%s: %s", what, zmq_strerror(zmq_errno()));
}

static keten_err open_monitor(hostile *h, void *sock)
{
    if (zmq_socket_monitor(sock, MONITOR_ENDPOINT, ZMQ_EVENT_ALL) != 0) {
        return zfail("monitoring the socket");
    }
    int zero = 0;
    h->mon = zmq_socket(h->ctx, ZMQ_PAIR);
    if (h->mon == NULL || zmq_setsockopt(h->mon, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_connect(h->mon, MONITOR_ENDPOINT) != 0) {
        return zfail("connecting the socket monitor");
    }
    return KETEN_OK;
}

/* Set a DEALER's CurveZMQ keys for mode (nothing for SEC_PLAIN). */
static keten_err curve_client(hostile *h, void *sock, sec_mode mode)
{
    if (mode == SEC_PLAIN) {
        return KETEN_OK;
    }
    uint8_t server[KETEN_CURVE_KEY_BYTES], pk[KETEN_CURVE_KEY_BYTES], sk[KETEN_CURVE_KEY_BYTES];
    memcpy(server, h->broker_cert->transport_pk.data, sizeof server);
    if (mode == SEC_CURVE_WRONG_SERVER) {
        crypto_box_keypair(server, sk);
    }
    if (mode == SEC_CURVE_UNLISTED) {
        crypto_box_keypair(pk, sk);
    } else {
        memcpy(pk, h->me->transport_pk, sizeof pk);
        memcpy(sk, h->me->transport_sk, sizeof sk);
    }
    bool ok = zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, sizeof server) == 0
        && zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pk, sizeof pk) == 0
        && zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sk, sizeof sk) == 0;
    sodium_memzero(sk, sizeof sk);
    return ok ? KETEN_OK : zfail("setting the CurveZMQ keys");
}

/* A DEALER to the broker, with the given security; rcvhwm 0 = default. */
static keten_err open_client(hostile *h, sec_mode mode, int rcvhwm)
{
    h->ctx = zmq_ctx_new();
    h->sock = h->ctx != NULL ? zmq_socket(h->ctx, ZMQ_DEALER) : NULL;
    if (h->sock == NULL) {
        return zfail("creating a DEALER socket");
    }
    int zero = 0, sndtimeo = (int)h->timeout_ms;
    if (zmq_setsockopt(h->sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(h->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo) != 0
        || (rcvhwm > 0 && zmq_setsockopt(h->sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm) != 0)) {
        return zfail("setting socket options");
    }
    keten_err e = curve_client(h, h->sock, mode);
    if (e != KETEN_OK) {
        return e;
    }
    e = open_monitor(h, h->sock);
    if (e != KETEN_OK) {
        return e;
    }
    if (zmq_connect(h->sock, h->broker) != 0) {
        return keten_err_set(
            KETEN_ERR_IO, "connecting to %s: %s", h->broker, zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

static void close_all(hostile *h)
{
    if (h->sock != NULL) {
        zmq_socket_monitor(h->sock, NULL, 0);
        zmq_close(h->sock);
    }
    if (h->mon != NULL) {
        zmq_close(h->mon);
    }
    if (h->ctx != NULL) {
        zmq_ctx_term(h->ctx);
    }
    keten_identity_destroy(&h->me);
    keten_directory_destroy(&h->dir);
    keten_pb_free((ProtobufCMessage **)(void *)&h->anchor);
}

/* ---- frames ------------------------------------------------------------ */

static keten_err pack_frame(Keten__Frame *f, uint8_t **buf, size_t *len)
{
    return keten_pb_pack(&f->base, buf, len);
}

static keten_err credit_frame(uint64_t rid, uint32_t credit, uint8_t **buf, size_t *len)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = credit;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    return pack_frame(&f, buf, len);
}

/* Hello{0}: a node's first frame; without it the broker refuses submits. */
static keten_err send_hello(hostile *h)
{
    Keten__Hello hl = KETEN__HELLO__INIT;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_HELLO;
    f.hello = &hl;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = pack_frame(&f, &buf, &len);
    if (e == KETEN_OK && zmq_send(h->sock, buf, len, 0) < 0) {
        e = keten_err_set(KETEN_ERR_IO, "sending Hello: %s", zmq_strerror(zmq_errno()));
    }
    free(buf);
    return e;
}

static keten_err submit_frame(
    uint64_t rid, const uint8_t *env, size_t env_len, uint8_t **buf, size_t *len)
{
    Keten__Submit s = KETEN__SUBMIT__INIT;
    s.envelope.data = (uint8_t *)env;
    s.envelope.len = env_len;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = rid;
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &s;
    return pack_frame(&f, buf, len);
}

static keten_err send_bytes(hostile *h, const uint8_t *buf, size_t len, int flags)
{
    if (zmq_send(h->sock, buf, len, flags) < 0) {
        return keten_err_set(KETEN_ERR_IO, "sending %zu bytes: %s", len, zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

static keten_err send_control(hostile *h)
{
    Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
    dr.after_version = 0;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = HOSTILE_CONTROL_RID;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    f.directory_request = &dr;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = pack_frame(&f, &buf, &len);
    if (e == KETEN_OK) {
        e = send_bytes(h, buf, len, 0);
    }
    free(buf);
    return e;
}

/* Print one received message. */
static void on_message(hostile *h, const uint8_t *data, size_t len)
{
    json_t *o = json_object();
    Keten__Frame *f = NULL;
    if (KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f) != KETEN_OK) {
        keten_err_clear();
        json_object_set_new(o, "event", json_string("garbage"));
        json_object_set_new(o, "bytes", json_integer((json_int_t)len));
        emit(o);
        return;
    }
    h->frames++;
    json_object_set_new(o, "event", json_string("frame"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)f->request_id));
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &keten__frame__descriptor, (unsigned)f->body_case);
    json_object_set_new(o, "body", json_string(fd != NULL ? fd->name : "none"));
    if (f->body_case == KETEN__FRAME__BODY_ERROR && f->error != NULL) {
        h->errors++;
        json_object_set_new(o, "reason",
            json_string(enum_name(&keten__reason__descriptor, f->error->reason, "REASON_")));
        json_object_set_new(o, "detail", json_string(f->error->detail));
    }
    if (f->request_id == HOSTILE_CONTROL_RID) {
        h->control_answers++;
    }
    emit(o);
    keten_pb_free((ProtobufCMessage **)(void *)&f);
}

static const char *event_name(uint16_t ev)
{
    switch (ev) {
    case ZMQ_EVENT_CONNECTED:
        return "connected";
    case ZMQ_EVENT_CONNECT_DELAYED:
        return "connect-delayed";
    case ZMQ_EVENT_CONNECT_RETRIED:
        return "connect-retried";
    case ZMQ_EVENT_CLOSED:
        return "closed";
    case ZMQ_EVENT_DISCONNECTED:
        return "disconnected";
    case ZMQ_EVENT_MONITOR_STOPPED:
        return "monitor-stopped";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "handshake-failed";
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return "handshake-succeeded";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return "handshake-failed-protocol";
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return "handshake-failed-auth";
    case ZMQ_EVENT_ACCEPTED:
        return "accepted";
    case ZMQ_EVENT_LISTENING:
        return "listening";
    default:
        return "other";
    }
}

/* Read every waiting monitor event: count and print them. */
static void read_monitor(hostile *h)
{
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, h->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev)) {
            (void)zmq_msg_recv(&addr, h->mon, 0);
        }
        if (zmq_msg_size(&ev) >= 6) {
            uint16_t id;
            uint32_t value;
            memcpy(&id, zmq_msg_data(&ev), sizeof id);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, sizeof value);
            switch (id) {
            case ZMQ_EVENT_CONNECTED:
                h->ev_connected++;
                break;
            case ZMQ_EVENT_DISCONNECTED:
                h->ev_disconnected++;
                break;
            case ZMQ_EVENT_CLOSED:
                h->ev_closed++;
                break;
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                h->ev_hs_ok++;
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                h->ev_hs_failed++;
                h->last_failure = event_name(id);
                h->last_failure_value = value;
                break;
            default:
                break;
            }
            if (!h->quiet && id != ZMQ_EVENT_CONNECT_DELAYED && id != ZMQ_EVENT_CONNECT_RETRIED) {
                json_t *o = json_object();
                json_object_set_new(o, "event", json_string("socket"));
                json_object_set_new(o, "what", json_string(event_name(id)));
                json_object_set_new(o, "value", json_integer((json_int_t)value));
                emit(o);
            }
        }
        zmq_msg_close(&addr);
        zmq_msg_close(&ev);
    }
}

/* Read frames and socket events until the deadline (monotonic ms). With
 * control_at != 0, send the control request once that time has come. */
static void listen_until(hostile *h, uint64_t deadline, uint64_t control_at)
{
    for (;;) {
        uint64_t now = keten_mono_ms();
        if (control_at != 0 && now >= control_at) {
            keten_err e = send_control(h);
            if (e != KETEN_OK) {
                (void)fail(e, "control request");
            }
            control_at = 0;
        }
        if (now >= deadline) {
            return;
        }
        /* Decided: the control request was answered, and the hostile message
         * was answered with an error or made libzmq drop the connection. */
        if (control_at == 0 && h->control_answers > 0
            && (h->errors > 0 || h->ev_disconnected > 0)) {
            return;
        }
        uint64_t until = control_at != 0 && control_at < deadline ? control_at : deadline;
        zmq_pollitem_t it[2] = { { h->sock, 0, ZMQ_POLLIN, 0 }, { h->mon, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll(it, 2, (long)(until > now ? until - now : 0));
        if (rc <= 0) {
            continue;
        }
        if (it[1].revents & ZMQ_POLLIN) {
            read_monitor(h);
        }
        if (it[0].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, h->sock, ZMQ_DONTWAIT) >= 0) {
                on_message(h, zmq_msg_data(&m), zmq_msg_size(&m));
            }
            zmq_msg_close(&m);
        }
    }
}

static void summary(hostile *h, const char *action)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("summary"));
    json_object_set_new(o, "action", json_string(action));
    json_object_set_new(o, "frames", json_integer((json_int_t)h->frames));
    json_object_set_new(o, "errors", json_integer((json_int_t)h->errors));
    json_object_set_new(o, "control_answered", json_boolean(h->control_answers > 0));
    json_object_set_new(o, "connected", json_integer((json_int_t)h->ev_connected));
    json_object_set_new(o, "handshake_ok", json_integer((json_int_t)h->ev_hs_ok));
    json_object_set_new(o, "handshake_failed", json_integer((json_int_t)h->ev_hs_failed));
    json_object_set_new(o, "disconnected", json_integer((json_int_t)h->ev_disconnected));
    if (h->last_failure != NULL) {
        json_object_set_new(o, "failure", json_string(h->last_failure));
        json_object_set_new(o, "failure_value", json_integer((json_int_t)h->last_failure_value));
    }
    emit(o);
}

/* ---- flood ------------------------------------------------------------- */

typedef struct flood_opts {
    const char *to, *json_path, *kind;
    uint64_t count, credit, hold_ms, drain_ms, junk_bytes, drain_errors;
} flood_opts;

/* Seal one envelope per message (distinct msg_ids) into a Submit frame. */
static keten_err seal_frames(
    hostile *h, const flood_opts *fo, uint8_t ***frames_out, size_t **lens_out)
{
    uint8_t *json = NULL, *payload = NULL;
    size_t json_len = 0, payload_len = 0;
    Keten__Signal *sig = NULL;
    char **to = NULL;
    size_t n_to = 0;
    Keten__Kind kind = KETEN__KIND__KIND_SIGNAL;
    uint8_t *junk = NULL;
    uint8_t **frames = calloc(fo->count, sizeof *frames);
    size_t *lens = calloc(fo->count, sizeof *lens);
    keten_err e = (frames == NULL || lens == NULL) ? KETEN_ERR_NOMEM : KETEN_OK;
    if (e == KETEN_OK && fo->kind != NULL) {
        e = keten_policy_kind_parse(fo->kind, &kind);
    }
    if (e == KETEN_OK && fo->junk_bytes == 0) {
        if ((e = keten_file_read(fo->json_path, KETEN_SIGNAL_JSON_MAX, &json, &json_len))
                != KETEN_OK
            || (e = keten_signal_json_parse((const char *)json, json_len, &sig)) != KETEN_OK
            || (e = keten_signal_json_pack(sig, &payload, &payload_len)) != KETEN_OK
            || (e = keten_cli_split(fo->to, "--to", &to, &n_to)) != KETEN_OK) {
            goto out;
        }
    }
    if (e == KETEN_OK && fo->junk_bytes > 0) {
        junk = malloc(fo->junk_bytes);
        if (junk == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            randombytes_buf(junk, fo->junk_bytes);
        }
    }
    for (uint64_t i = 0; i < fo->count && e == KETEN_OK; i++) {
        if (junk != NULL) {
            e = submit_frame(i + 1, junk, fo->junk_bytes, &frames[i], &lens[i]);
            continue;
        }
        uint64_t now = keten_now_ms();
        keten_envelope_seal_params sp = {
            .kind = kind,
            .category = sig->type,
            .purpose = sig->purpose,
            .created_at = now,
            .expires_at = now + HOSTILE_LIFETIME_MS,
        };
        uint8_t msg_id[KETEN_MSG_ID_BYTES];
        uint8_t *env = NULL;
        size_t env_len = 0;
        e = keten_envelope_seal(h->me, h->dir, (const char *const *)to, n_to, &sp, payload,
            payload_len, msg_id, &env, &env_len);
        if (e == KETEN_OK) {
            e = submit_frame(i + 1, env, env_len, &frames[i], &lens[i]);
        }
        free(env);
    }
out:
    free(junk);
    keten_cli_split_free(&to, n_to);
    keten_signal_json_free(&sig);
    free(payload);
    free(json);
    if (e != KETEN_OK) {
        for (uint64_t i = 0; frames != NULL && i < fo->count; i++) {
            free(frames[i]);
        }
        free(frames);
        free(lens);
        return e;
    }
    *frames_out = frames;
    *lens_out = lens;
    return KETEN_OK;
}

static int act_flood(hostile *h, const flood_opts *fo)
{
    if (fo->junk_bytes == 0 && (fo->to == NULL || fo->json_path == NULL)) {
        return fail(
            keten_err_set(KETEN_ERR_INVALID, "flood needs --to and --json, or --junk-bytes"),
            "options");
    }
    uint8_t **frames = NULL;
    size_t *lens = NULL;
    keten_err e = seal_frames(h, fo, &frames, &lens);
    if (e != KETEN_OK) {
        return fail(e, "seal");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("sealed"));
    json_object_set_new(o, "count", json_integer((json_int_t)fo->count));
    json_object_set_new(o, "bytes", json_integer((json_int_t)(fo->count > 0 ? lens[0] : 0)));
    emit(o);
    /* Receive high-water mark 1: this peer never reads, and libzmq soon stops
     * reading the socket for it. Linger: what was queued is still sent when
     * the socket closes (within the timeout). */
    int linger = (int)h->timeout_ms;
    if ((e = open_client(h, SEC_CURVE, 1)) != KETEN_OK) {
        goto out;
    }
    if (zmq_setsockopt(h->sock, ZMQ_LINGER, &linger, sizeof linger) != 0) {
        e = zfail("setting ZMQ_LINGER");
        goto out;
    }
    if ((e = send_hello(h)) != KETEN_OK) {
        goto out;
    }
    if (fo->credit > 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if ((e = credit_frame(0, (uint32_t)fo->credit, &buf, &len)) == KETEN_OK) {
            e = send_bytes(h, buf, len, 0);
        }
        free(buf);
        if (e != KETEN_OK) {
            goto out;
        }
    }
    uint64_t start = keten_mono_ms();
    uint64_t sent = 0;
    for (; sent < fo->count; sent++) {
        if (send_bytes(h, frames[sent], lens[sent], 0) != KETEN_OK) {
            keten_err_clear();
            break; /* the broker stopped taking them within the send timeout */
        }
        free(frames[sent]);
        frames[sent] = NULL;
    }
    o = json_object();
    json_object_set_new(o, "event", json_string("flooded"));
    json_object_set_new(o, "sent", json_integer((json_int_t)sent));
    json_object_set_new(o, "ms", json_integer((json_int_t)(keten_mono_ms() - start)));
    emit(o);
    if (fo->hold_ms > 0) {
        usleep((useconds_t)(fo->hold_ms > 3600000 ? 3600000 : fo->hold_ms) * 1000u);
    }
    if (fo->drain_ms > 0) {
        h->frames = 0;
        uint64_t errors = 0;
        uint64_t deadline = keten_mono_ms() + fo->drain_ms;
        /* Count without printing every frame; with --drain-errors N, stop
         * once N Error frames came (the broker answered every submit, so it
         * read them all before this peer closes). */
        while (keten_mono_ms() < deadline
            && (fo->drain_errors == 0 || errors < fo->drain_errors)) {
            zmq_pollitem_t it = { h->sock, 0, ZMQ_POLLIN, 0 };
            uint64_t now = keten_mono_ms();
            if (zmq_poll(&it, 1, (long)(deadline > now ? deadline - now : 0)) <= 0) {
                continue;
            }
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, h->sock, ZMQ_DONTWAIT) >= 0) {
                h->frames++;
                Keten__Frame *f = NULL;
                if (KETEN_PB_UNPACK(keten__frame, zmq_msg_data(&m), zmq_msg_size(&m),
                        KETEN_FRAME_MAX, "frame", &f)
                    == KETEN_OK) {
                    errors += f->body_case == KETEN__FRAME__BODY_ERROR;
                    keten_pb_free((ProtobufCMessage **)(void *)&f);
                } else {
                    keten_err_clear();
                }
            }
            zmq_msg_close(&m);
        }
        o = json_object();
        json_object_set_new(o, "event", json_string("drained"));
        json_object_set_new(o, "frames", json_integer((json_int_t)h->frames));
        json_object_set_new(o, "errors", json_integer((json_int_t)errors));
        emit(o);
    }
out:
    for (uint64_t i = 0; i < fo->count; i++) {
        free(frames[i]);
    }
    free(frames);
    free(lens);
    return e == KETEN_OK ? 0 : fail(e, "flood");
}

/* ---- single hostile messages ------------------------------------------ */

/* A submit Frame of exactly target bytes (the envelope is zeros). */
static keten_err frame_of_size(size_t target, uint8_t **buf, size_t *len)
{
    size_t env_len = target - 16;
    for (int tries = 0; tries < 8; tries++) {
        uint8_t *zeros = calloc(1, env_len);
        if (zeros == NULL) {
            return KETEN_ERR_NOMEM;
        }
        keten_err e = submit_frame(1, zeros, env_len, buf, len);
        free(zeros);
        if (e != KETEN_OK) {
            return e;
        }
        if (*len == target) {
            return KETEN_OK;
        }
        env_len = env_len + target - *len;
        free(*buf);
        *buf = NULL;
    }
    return keten_err_set(KETEN_ERR_INVALID, "cannot build a frame of exactly %zu bytes", target);
}

static int act_frame(hostile *h, const char *kind, uint64_t bytes)
{
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    keten_err e = KETEN_OK;
    bool multipart = false;
    if (kind == NULL) {
        return fail(keten_err_set(KETEN_ERR_INVALID, "frame needs --kind"), "options");
    }
    if (strcmp(kind, "oversize") == 0) {
        len = (size_t)KETEN_FRAME_MAX + 1;
        buf = calloc(1, len);
        e = buf == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    } else if (strcmp(kind, "sized") == 0) {
        e = bytes >= 64 && bytes <= KETEN_FRAME_MAX + 1024
            ? frame_of_size((size_t)bytes, &buf, &len)
            : keten_err_set(KETEN_ERR_INVALID, "sized needs --bytes 64..KETEN_FRAME_MAX+1024");
    } else if (strcmp(kind, "multipart") == 0) {
        multipart = true;
        if ((e = credit_frame(1, 1, &buf, &len)) == KETEN_OK) {
            e = credit_frame(2, 1, &buf2, &len2);
        }
    } else if (strcmp(kind, "empty") == 0) {
        buf = malloc(1);
        len = 0;
        e = buf == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
    } else if (strcmp(kind, "no-body") == 0) {
        Keten__Frame f = KETEN__FRAME__INIT;
        f.request_id = 7;
        e = pack_frame(&f, &buf, &len);
    } else if (strcmp(kind, "unknown-field") == 0 || strcmp(kind, "nested-unknown") == 0) {
        uint8_t *base = NULL;
        size_t base_len = 0;
        if ((e = credit_frame(8, 0, &base, &base_len)) == KETEN_OK) {
            buf = malloc(base_len + 8);
            e = buf == NULL ? KETEN_ERR_NOMEM : KETEN_OK;
        }
        if (e == KETEN_OK && strcmp(kind, "unknown-field") == 0) {
            /* field 1000, varint 1: tag (1000 << 3 | 0) = 8000 = 0xc0 0x3e */
            memcpy(buf, base, base_len);
            const uint8_t extra[] = { 0xc0, 0x3e, 0x01 };
            memcpy(buf + base_len, extra, sizeof extra);
            len = base_len + sizeof extra;
        } else if (e == KETEN_OK) {
            /* request_id 8, credit (field 14, length 2) { field 15, varint 1 }:
             * Credit has only field 1, so field 15 is unknown. */
            const uint8_t nested[] = { 0x08, 0x08, 0x72, 0x02, 0x78, 0x01 };
            memcpy(buf, nested, sizeof nested);
            len = sizeof nested;
        }
        free(base);
    } else if (strcmp(kind, "truncated") == 0 || strcmp(kind, "empty-submit") == 0) {
        uint8_t env[200];
        memset(env, 0x5a, sizeof env);
        bool empty = strcmp(kind, "empty-submit") == 0;
        e = submit_frame(3, env, empty ? 0 : sizeof env, &buf, &len);
        if (e == KETEN_OK && !empty) {
            len /= 2;
        }
    } else if (strcmp(kind, "huge-length") == 0) {
        /* request_id 4; field 2 (submit), length 0x7fffffff; then 10 bytes */
        const uint8_t huge[]
            = { 0x08, 0x04, 0x12, 0xff, 0xff, 0xff, 0xff, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
        buf = malloc(sizeof huge);
        if (buf == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            memcpy(buf, huge, sizeof huge);
            len = sizeof huge;
        }
    } else if (strcmp(kind, "not-protobuf") == 0) {
        len = 64;
        buf = malloc(len);
        if (buf == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            memset(buf, 0xff, len);
        }
    } else if (strcmp(kind, "broker-frame") == 0) {
        uint8_t env[100];
        memset(env, 0x11, sizeof env);
        Keten__Deliver d = KETEN__DELIVER__INIT;
        d.envelope.data = env;
        d.envelope.len = sizeof env;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.request_id = 5;
        f.body_case = KETEN__FRAME__BODY_DELIVER;
        f.deliver = &d;
        e = pack_frame(&f, &buf, &len);
    } else {
        return fail(keten_err_set(KETEN_ERR_INVALID, "unknown --kind %s", kind), "options");
    }
    if (e != KETEN_OK) {
        free(buf);
        free(buf2);
        return fail(e, "build");
    }
    bool submit = strcmp(kind, "sized") == 0 || strcmp(kind, "truncated") == 0
        || strcmp(kind, "empty-submit") == 0;
    if ((e = open_client(h, SEC_CURVE, 0)) == KETEN_OK && submit) {
        e = send_hello(h); /* so that the submit path itself is what answers */
    }
    if (e == KETEN_OK) {
        e = send_bytes(h, buf, len, multipart ? ZMQ_SNDMORE : 0);
    }
    if (e == KETEN_OK && multipart) {
        e = send_bytes(h, buf2, len2, 0);
    }
    free(buf);
    free(buf2);
    if (e != KETEN_OK) {
        return fail(e, "send");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("sent"));
    json_object_set_new(o, "kind", json_string(kind));
    json_object_set_new(o, "bytes", json_integer((json_int_t)(len + len2)));
    emit(o);
    uint64_t now = keten_mono_ms();
    listen_until(h, now + h->listen_ms, now + HOSTILE_CONTROL_DELAY_MS);
    summary(h, "frame");
    return 0;
}

/* ---- unauthenticated peers --------------------------------------------- */

static int act_unauth(hostile *h, sec_mode mode, const char *action)
{
    keten_err e = open_client(h, mode, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (e == KETEN_OK && (e = credit_frame(0, 64, &buf, &len)) == KETEN_OK) {
        e = send_bytes(h, buf, len, 0);
    }
    free(buf);
    if (e != KETEN_OK) {
        return fail(e, action);
    }
    uint64_t now = keten_mono_ms();
    listen_until(h, now + h->listen_ms, now + HOSTILE_CONTROL_DELAY_MS);
    summary(h, action);
    return 0;
}

/* N clients with unlisted keys, reconnecting fast, for --listen-ms. */
static int act_unlisted(hostile *h, uint64_t n)
{
    void *socks[HOSTILE_SOCKETS_MAX] = { NULL };
    keten_err e = KETEN_OK;
    h->ctx = zmq_ctx_new();
    if (h->ctx == NULL) {
        return fail(zfail("zmq_ctx_new"), "unlisted-key");
    }
    int zero = 0, ivl = HOSTILE_STORM_RECONNECT_MS;
    h->quiet = true;
    for (uint64_t i = 0; i < n && e == KETEN_OK; i++) {
        socks[i] = zmq_socket(h->ctx, ZMQ_DEALER);
        if (socks[i] == NULL || zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero) != 0
            || zmq_setsockopt(socks[i], ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) != 0) {
            e = zfail("a DEALER socket");
            break;
        }
        if ((e = curve_client(h, socks[i], SEC_CURVE_UNLISTED)) != KETEN_OK) {
            break;
        }
        if (i == 0 && (e = open_monitor(h, socks[0])) != KETEN_OK) {
            break;
        }
        if (zmq_connect(socks[i], h->broker) != 0) {
            e = zfail("connecting");
            break;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        if ((e = credit_frame(0, 64, &buf, &len)) == KETEN_OK
            && zmq_send(socks[i], buf, len, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN) {
            e = zfail("sending");
        }
        free(buf);
    }
    if (e == KETEN_OK) {
        h->sock = socks[0];
        uint64_t deadline = keten_mono_ms() + h->listen_ms;
        while (keten_mono_ms() < deadline) {
            for (uint64_t i = 0; i < n; i++) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                while (zmq_msg_recv(&m, socks[i], ZMQ_DONTWAIT) >= 0) {
                    on_message(h, zmq_msg_data(&m), zmq_msg_size(&m));
                }
                zmq_msg_close(&m);
            }
            read_monitor(h);
            usleep(10000);
        }
        h->sock = NULL;
    }
    if (h->mon != NULL) {
        zmq_socket_monitor(socks[0], NULL, 0);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (socks[i] != NULL) {
            zmq_close(socks[i]);
        }
    }
    if (e != KETEN_OK) {
        return fail(e, "unlisted-key");
    }
    summary(h, "unlisted-key");
    return 0;
}

/* ---- a plain stream socket --------------------------------------------- */

static int raw_connect(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        if (strlen(endpoint + 6) >= sizeof sa.sun_path) {
            return -1;
        }
        memcpy(sa.sun_path, endpoint + 6, strlen(endpoint + 6));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        char host[256];
        snprintf(host, sizeof host, "%s", endpoint + 6);
        char *colon = strrchr(host, ':');
        if (colon == NULL) {
            return -1;
        }
        *colon = '\0';
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
            return -1;
        }
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        return fd;
    }
    return -1;
}

static int act_raw_socket(hostile *h, uint64_t bytes)
{
    int fd = raw_connect(h->broker);
    if (fd < 0) {
        return fail(keten_err_set(KETEN_ERR_IO, "cannot connect a stream socket to %s: %s",
                        h->broker, strerror(errno)),
            "connect");
    }
    uint8_t *junk = malloc(bytes > 0 ? bytes : 1);
    if (junk == NULL) {
        close(fd);
        return fail(KETEN_ERR_NOMEM, "raw-socket");
    }
    randombytes_buf(junk, bytes);
    junk[0] = 0x01; /* never the 0xff of a ZMTP 3 greeting */
    size_t written = 0;
    uint64_t deadline = keten_mono_ms() + h->listen_ms;
    size_t got = 0;
    bool closed = false;
    while (!closed && keten_mono_ms() < deadline) {
        struct pollfd pfd = { fd, (short)(POLLIN | (written < bytes ? POLLOUT : 0)), 0 };
        uint64_t now = keten_mono_ms();
        if (poll(&pfd, 1, (int)(deadline > now ? deadline - now : 0)) <= 0) {
            continue;
        }
        if (pfd.revents & POLLIN) {
            uint8_t tmp[4096];
            ssize_t n = read(fd, tmp, sizeof tmp);
            if (n <= 0) {
                closed = true;
            } else {
                got += (size_t)n;
            }
        } else if (pfd.revents & (POLLHUP | POLLERR)) {
            closed = true;
        } else if (pfd.revents & POLLOUT) {
            ssize_t n = send(fd, junk + written, bytes - written, MSG_NOSIGNAL);
            if (n < 0) {
                closed = true;
            } else {
                written += (size_t)n;
            }
        }
    }
    close(fd);
    free(junk);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("raw"));
    json_object_set_new(o, "written", json_integer((json_int_t)written));
    json_object_set_new(o, "read", json_integer((json_int_t)got));
    json_object_set_new(o, "closed_by_peer", json_boolean(closed));
    emit(o);
    return 0;
}

/* ---- a fake broker that delivers to a real node ------------------------ */

#define FAKE_LOG_PREFIX "audit-" /* the broker store's names for its log */
#define FAKE_LOG_MAP_BYTES (64u << 20)

typedef struct deliver_opts {
    const char *files[HOSTILE_DELIVER_MAX];
    bool bad_proof[HOSTILE_DELIVER_MAX]; /* deliver with one path hash changed */
    size_t n_files;
    const char *log_dir;
} deliver_opts;

typedef struct fake_answer {
    const char *kind; /* "stored", "refused", "credit", "none" */
    bool receipt_valid;
    char reason[48];
    char msg_id[KETEN_MSG_ID_HEX_BYTES];
} fake_answer;

/* The fake broker's log: the broker store's two log tables in an LMDB
 * environment of its own (--log DIR), kept between runs, so that a node
 * holding the previous run's checkpoint is proven consistent from it. */
typedef struct fake_log {
    MDB_env *env;
    keten_merkle_log *log;
} fake_log;

/* One run of the fake broker. */
typedef struct fake_run {
    hostile *h;
    fake_log lg;
    MDB_txn *txn; /* read transaction of the deliveries (after the batch) */
    uint64_t size; /* the tree size every proof of this run is against */
    uint8_t rid[256]; /* the node's routing id (of its latest frame) */
    size_t rid_len;
    bool connected, hello, hello_pending; /* pending: not answered yet */
    uint64_t hello_size; /* of the latest Hello */
} fake_run;

static keten_err mdb_fail(int rc, const char *what)
{
    return keten_err_set(KETEN_ERR_STORE, "%s: %s", what, mdb_strerror(rc));
}

static void fake_log_close(fake_log *lg)
{
    keten_merkle_log_destroy(&lg->log);
    if (lg->env != NULL) {
        mdb_env_close(lg->env);
        lg->env = NULL;
    }
}

static keten_err fake_log_open(const char *dir, fake_log *lg)
{
    MDB_txn *txn = NULL;
    keten_err e = KETEN_OK;
    int rc;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return keten_err_set(KETEN_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    }
    if ((rc = mdb_env_create(&lg->env)) != 0) {
        lg->env = NULL;
        return mdb_fail(rc, "the fake broker's log");
    }
    if ((rc = mdb_env_set_maxdbs(lg->env, 2)) != 0
        || (rc = mdb_env_set_mapsize(lg->env, FAKE_LOG_MAP_BYTES)) != 0
        || (rc = mdb_env_open(lg->env, dir, 0, 0600)) != 0
        || (rc = mdb_txn_begin(lg->env, NULL, 0, &txn)) != 0) {
        e = mdb_fail(rc, dir);
        goto out;
    }
    if ((e = keten_merkle_log_open(txn, FAKE_LOG_PREFIX, &lg->log)) != KETEN_OK) {
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        e = mdb_fail(rc, "opening the fake broker's log");
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (e != KETEN_OK) {
        fake_log_close(lg);
    }
    return e;
}

/* The leaf of the `submitted` record with envelope hash env_hash among the
 * first size leaves, if there is one (a message delivered again is proven
 * by its one record, as the broker does). */
static keten_err fake_find_submitted(const fake_log *lg, MDB_txn *txn, uint64_t size,
    const uint8_t env_hash[static KETEN_HASH_BYTES], bool *found, uint64_t *leaf)
{
    *found = false;
    for (uint64_t i = 0; i < size; i++) {
        const uint8_t *data = NULL;
        size_t len = 0;
        Keten__AuditRecord *r = NULL;
        keten_err e = keten_merkle_log_leaf(lg->log, txn, i, &data, &len);
        if (e != KETEN_OK) {
            return e;
        }
        if ((e = KETEN_PB_UNPACK(
                 keten__audit_record, data, len, KETEN_AUDIT_RECORD_MAX, "audit record", &r))
            != KETEN_OK) {
            return e;
        }
        bool same = r->event == KETEN__EVENT__EVENT_SUBMITTED
            && r->envelope_hash.len == KETEN_HASH_BYTES
            && sodium_memcmp(r->envelope_hash.data, env_hash, KETEN_HASH_BYTES) == 0;
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        if (same) {
            *found = true;
            *leaf = i;
            return KETEN_OK;
        }
    }
    return KETEN_OK;
}

/* Append the `submitted` record of the envelope bytes, as the broker writes
 * it (broker/audit.c audit_submitted; keten_logproof_record_is_envelope's fields),
 * as far as they parse; *leaf is its index. */
static keten_err fake_submitted(hostile *h, const fake_log *lg, MDB_txn *txn, const uint8_t *env,
    size_t env_len, uint64_t *leaf)
{
    Keten__Envelope *e_msg = NULL;
    Keten__Header *hd = NULL;
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    uint8_t ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t size = 0;
    keten_err e = keten_merkle_log_size(lg->log, txn, &size);
    if (e != KETEN_OK) {
        return e;
    }
    rec.seq = size;
    rec.event = KETEN__EVENT__EVENT_SUBMITTED;
    rec.time = keten_now_ms();
    rec.directory_version = keten_directory_version(h->dir);
    crypto_hash_sha256(env_hash, env, env_len);
    rec.envelope_hash.data = env_hash;
    rec.envelope_hash.len = sizeof env_hash;
    if (KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &e_msg)
            == KETEN_OK
        && KETEN_PB_UNPACK(keten__header, e_msg->header.data, e_msg->header.len, KETEN_ENVELOPE_MAX,
               "header", &hd)
            == KETEN_OK) {
        rec.msg_id = hd->msg_id;
        rec.sender = hd->sender;
        rec.n_recipients = hd->n_recipients;
        rec.recipients = hd->recipients;
        rec.kind = hd->kind;
        rec.category = hd->category;
        rec.purpose = hd->purpose;
        rec.header = e_msg->header;
        crypto_hash_sha256(ct_hash, e_msg->ciphertext.data, e_msg->ciphertext.len);
        rec.ciphertext_hash.data = ct_hash;
        rec.ciphertext_hash.len = sizeof ct_hash;
        rec.signature = e_msg->signature;
        rec.size_bucket = hd->padded_len;
    }
    keten_err_clear();
    e = keten_pb_pack(&rec.base, &buf, &len);
    if (e == KETEN_OK) {
        e = keten_merkle_log_append(lg->log, txn, buf, len, leaf);
    }
    if (e == KETEN_OK && *leaf != size) {
        e = keten_err_set(KETEN_ERR_STORE, "leaf %llu was written at index %llu",
            (unsigned long long)size, (unsigned long long)*leaf);
    }
    free(buf);
    keten_pb_free((ProtobufCMessage **)(void *)&hd);
    keten_pb_free((ProtobufCMessage **)(void *)&e_msg);
    return e;
}

static keten_err fake_send(hostile *h, const uint8_t *rid, size_t rid_len, Keten__Frame *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = pack_frame(f, &buf, &len);
    if (e == KETEN_OK
        && (zmq_send(h->sock, rid, rid_len, ZMQ_SNDMORE) < 0
            || zmq_send(h->sock, buf, len, 0) < 0)) {
        e = zfail("sending to the node");
    }
    free(buf);
    return e;
}

/* The checkpoint of the log's first fk->size leaves, signed with the broker's
 * log key (and read back), as a CheckpointFrame with the RFC 9162
 * consistency proof from old_size (none from 0 or from size itself). */
static keten_err fake_checkpoint(fake_run *fk, uint64_t old_size)
{
    hostile *h = fk->h;
    uint64_t size = fk->size;
    keten_checkpoint ck, check;
    keten_hash proof[KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData bins[KETEN_MERKLE_MAX_PROOF];
    size_t n = 0;
    char *note = NULL;
    if (old_size > size) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the node's checkpoint has %llu leaves; this log has %llu",
            (unsigned long long)old_size, (unsigned long long)size);
    }
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/%s", keten_directory_network(h->dir));
    ck.size = size;
    keten_err e = keten_merkle_log_root(fk->lg.log, fk->txn, size, ck.root);
    if (e != KETEN_OK) {
        return e;
    }
    ck.dir_version = keten_directory_version(h->dir);
    memcpy(ck.dir_hash, keten_directory_hash(h->dir), KETEN_HASH_BYTES);
    if ((e = keten_checkpoint_sign(&ck, h->me->id, h->me->log_sk, &note)) != KETEN_OK) {
        return e;
    }
    e = keten_checkpoint_open(note, strlen(note), h->me->id, h->me->log_pk, &check);
    if (e == KETEN_OK
        && (check.size != size || sodium_memcmp(check.root, ck.root, KETEN_HASH_BYTES) != 0)) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT, "the signed checkpoint does not read back");
    }
    if (e == KETEN_OK && old_size > 0 && old_size < size) {
        e = keten_merkle_log_consistency_proof(fk->lg.log, fk->txn, old_size, size, proof, &n);
    }
    if (e == KETEN_OK) {
        for (size_t i = 0; i < n; i++) {
            bins[i].data = proof[i];
            bins[i].len = KETEN_HASH_BYTES;
        }
        Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
        cf.note = note;
        cf.old_size = old_size;
        cf.n_consistency = n;
        cf.consistency = n > 0 ? bins : NULL;
        Keten__Frame f = KETEN__FRAME__INIT;
        f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
        f.checkpoint = &cf;
        e = fake_send(h, fk->rid, fk->rid_len, &f);
    }
    free(note);
    if (e == KETEN_OK) {
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("checkpoint"));
        json_object_set_new(o, "size", json_integer((json_int_t)size));
        json_object_set_new(o, "old_size", json_integer((json_int_t)old_size));
        json_object_set_new(o, "consistency", json_integer((json_int_t)n));
        emit(o);
    }
    return e;
}

/* Deliver env with the proof of its record (leaf) in the tree of fk->size
 * leaves; bad: with the first hash of the path changed, so that the path no
 * longer leads to the signed root. */
static keten_err fake_deliver(
    fake_run *fk, const uint8_t *env, size_t env_len, uint64_t leaf, bool bad)
{
    keten_logproof_buf pb;
    uint64_t size = fk->size;
    keten_err e = keten_logproof_build(fk->lg.log, fk->txn, leaf, size, &pb);
    if (e != KETEN_OK) {
        return e;
    }
    if (bad) {
        if (pb.msg.n_path == 0) {
            return keten_err_set(KETEN_ERR_INVALID, "a tree of one leaf has no path to change");
        }
        pb.path[0][0] ^= 0x01;
    }
    Keten__Deliver d = KETEN__DELIVER__INIT;
    d.envelope.data = (uint8_t *)env;
    d.envelope.len = env_len;
    d.proof = &pb.msg;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DELIVER;
    f.deliver = &d;
    return fake_send(fk->h, fk->rid, fk->rid_len, &f);
}

/* Print every leaf of a receipt batch ("leaf": msg_id, outcome, reason and
 * whether the batch verifies under the recipient's certificate); the answer
 * to the delivery of msg_id, if the batch has one, goes into *a. */
static bool fake_receipts(
    hostile *h, const Keten__ReceiptBatch *rb, const uint8_t *msg_id, fake_answer *a)
{
    Keten__ReceiptBatchHead *peek = NULL, *head = NULL;
    keten_hash *hashes = NULL;
    bool valid = false, answered = false;
    if (KETEN_PB_UNPACK(keten__receipt_batch_head, rb->head.data, rb->head.len,
            KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &peek)
        == KETEN_OK) {
        const Keten__NodeCert *cert = keten_directory_find_id(h->dir, peek->recipient);
        valid = cert != NULL
            && keten_receipt_batch_verify(cert, keten_directory_network(h->dir), rb, &head, &hashes)
                == KETEN_OK;
    }
    keten_err_clear();
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_pb_free((ProtobufCMessage **)(void *)&peek);
    for (size_t i = 0; i < rb->n_leaves; i++) {
        const Keten__ReceiptLeaf *lf = rb->leaves[i];
        char hex[KETEN_MSG_ID_HEX_BYTES] = "";
        if (lf->msg_id.len == KETEN_MSG_ID_BYTES) {
            keten_hex(lf->msg_id.data, KETEN_MSG_ID_BYTES, hex);
        }
        const char *outcome = lf->outcome == KETEN__OUTCOME__OUTCOME_STORED ? "stored"
            : lf->outcome == KETEN__OUTCOME__OUTCOME_REFUSED                ? "refused"
                                                                            : "other";
        const char *reason = enum_name(&keten__reason__descriptor, lf->reason, "REASON_");
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("leaf"));
        json_object_set_new(o, "msg_id", json_string(hex));
        json_object_set_new(o, "outcome", json_string(outcome));
        json_object_set_new(o, "reason", json_string(reason));
        json_object_set_new(o, "batch_valid", json_boolean(valid));
        emit(o);
        if (answered || msg_id == NULL || lf->msg_id.len != KETEN_MSG_ID_BYTES
            || memcmp(lf->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) != 0) {
            continue;
        }
        answered = true;
        a->kind = outcome;
        a->receipt_valid = valid;
        snprintf(a->msg_id, sizeof a->msg_id, "%s", hex);
        snprintf(a->reason, sizeof a->reason, "%s", reason);
    }
    return answered;
}

/* Look at one frame from the node: a Hello is noted in fk; is it the answer
 * to the delivery of msg_id (NULL: none awaited)? */
static bool fake_frame(
    fake_run *fk, const uint8_t *data, size_t len, const uint8_t *msg_id, fake_answer *a)
{
    Keten__Frame *f = NULL;
    if (KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    bool answered = false;
    if (f->body_case == KETEN__FRAME__BODY_HELLO) {
        fk->hello = true;
        fk->hello_pending = true;
        fk->hello_size = f->hello->tree_size;
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("hello"));
        json_object_set_new(o, "tree_size", json_integer((json_int_t)fk->hello_size));
        emit(o);
    } else if (f->body_case == KETEN__FRAME__BODY_CREDIT && f->credit->credit == 1
        && msg_id != NULL) {
        a->kind = "credit";
        answered = true;
    } else if (f->body_case == KETEN__FRAME__BODY_RECEIPTS) {
        answered = fake_receipts(fk->h, f->receipts, msg_id, a);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    return answered;
}

/* Receive one message on the ROUTER (routing id into rid); false on timeout. */
static bool fake_recv(
    hostile *h, uint64_t deadline, uint8_t *rid, size_t *rid_len, uint8_t **data, size_t *len)
{
    while (keten_mono_ms() < deadline) {
        zmq_pollitem_t it = { h->sock, 0, ZMQ_POLLIN, 0 };
        uint64_t now = keten_mono_ms();
        if (zmq_poll(&it, 1, (long)(deadline > now ? deadline - now : 0)) <= 0) {
            continue;
        }
        zmq_msg_t r, m;
        zmq_msg_init(&r);
        zmq_msg_init(&m);
        bool ok = zmq_msg_recv(&r, h->sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&r)
            && zmq_msg_size(&r) <= 255 && zmq_msg_recv(&m, h->sock, 0) >= 0;
        if (ok) {
            *rid_len = zmq_msg_size(&r);
            memcpy(rid, zmq_msg_data(&r), *rid_len);
            *len = zmq_msg_size(&m);
            *data = malloc(*len > 0 ? *len : 1);
            if (*data != NULL) {
                memcpy(*data, zmq_msg_data(&m), *len);
            }
        }
        zmq_msg_close(&m);
        zmq_msg_close(&r);
        if (ok && *data != NULL) {
            return true;
        }
    }
    return false;
}

/* Read the node's frames until deadline, until one answers the delivery of
 * msg_id, or (until_hello) until a Hello came. Once the batch is written
 * (fk->txn), a Hello is answered at once with the checkpoint of fk->size
 * proven from the Hello's size, as the broker answers it. */
static keten_err fake_listen(
    fake_run *fk, uint64_t deadline, const uint8_t *msg_id, fake_answer *a, bool until_hello)
{
    uint8_t *data = NULL;
    size_t len = 0;
    while (fake_recv(fk->h, deadline, fk->rid, &fk->rid_len, &data, &len)) {
        if (!fk->connected) {
            fk->connected = true;
            json_t *o = json_object();
            json_object_set_new(o, "event", json_string("connected"));
            emit(o);
        }
        bool done = fake_frame(fk, data, len, msg_id, a);
        free(data);
        if (fk->hello_pending && fk->txn != NULL) {
            fk->hello_pending = false;
            if (fk->hello_size != fk->size) {
                keten_err e = fake_checkpoint(fk, fk->hello_size);
                if (e != KETEN_OK) {
                    return e;
                }
            }
        }
        if (done || (until_hello && fk->hello)) {
            break;
        }
    }
    return KETEN_OK;
}

/* The envelope's msg_id (zeros when it does not parse). */
static void fake_msg_id(const uint8_t *env, size_t len, uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    Keten__Envelope *em = NULL;
    Keten__Header *hd = NULL;
    memset(msg_id, 0, KETEN_MSG_ID_BYTES);
    if (KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &em) == KETEN_OK
        && KETEN_PB_UNPACK(
               keten__header, em->header.data, em->header.len, KETEN_ENVELOPE_MAX, "header", &hd)
            == KETEN_OK
        && hd->msg_id.len == KETEN_MSG_ID_BYTES) {
        memcpy(msg_id, hd->msg_id.data, KETEN_MSG_ID_BYTES);
    }
    keten_err_clear();
    keten_pb_free((ProtobufCMessage **)(void *)&hd);
    keten_pb_free((ProtobufCMessage **)(void *)&em);
}

/* Append the submitted record of every envelope not in the log yet, in one
 * write transaction (the broker's batch); leaves[i] is envelope i's record. */
static keten_err fake_batch(fake_run *fk, uint8_t *const *envs, const size_t *env_lens, size_t n,
    const char *const *files, uint64_t *leaves)
{
    MDB_txn *txn = NULL;
    uint64_t old = 0;
    int rc = mdb_txn_begin(fk->lg.env, NULL, 0, &txn);
    if (rc != 0) {
        return mdb_fail(rc, "the fake broker's log");
    }
    keten_err e = keten_merkle_log_size(fk->lg.log, txn, &old);
    for (size_t i = 0; i < n && e == KETEN_OK; i++) {
        uint8_t env_hash[KETEN_HASH_BYTES], msg_id[KETEN_MSG_ID_BYTES];
        uint64_t size = 0;
        bool found = false;
        crypto_hash_sha256(env_hash, envs[i], env_lens[i]);
        fake_msg_id(envs[i], env_lens[i], msg_id);
        e = keten_merkle_log_size(fk->lg.log, txn, &size);
        if (e == KETEN_OK) {
            e = fake_find_submitted(&fk->lg, txn, size, env_hash, &found, &leaves[i]);
        }
        if (e == KETEN_OK && !found) {
            e = fake_submitted(fk->h, &fk->lg, txn, envs[i], env_lens[i], &leaves[i]);
        }
        if (e == KETEN_OK) {
            char hex[KETEN_MSG_ID_HEX_BYTES];
            keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
            json_t *o = json_object();
            json_object_set_new(o, "event", json_string("record"));
            json_object_set_new(o, "file", json_string(files[i]));
            json_object_set_new(o, "msg_id", json_string(hex));
            json_object_set_new(o, "leaf", json_integer((json_int_t)leaves[i]));
            json_object_set_new(o, "new", json_boolean(!found));
            emit(o);
        }
    }
    if (e == KETEN_OK) {
        e = keten_merkle_log_size(fk->lg.log, txn, &fk->size);
    }
    if (e != KETEN_OK) {
        mdb_txn_abort(txn);
        return e;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        return mdb_fail(rc, "committing the fake broker's log");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("log"));
    json_object_set_new(o, "old_size", json_integer((json_int_t)old));
    json_object_set_new(o, "size", json_integer((json_int_t)fk->size));
    emit(o);
    return KETEN_OK;
}

static int act_fake_broker(hostile *h, const deliver_opts *dopt)
{
    if (h->listen == NULL || dopt->n_files == 0 || dopt->log_dir == NULL) {
        return fail(keten_err_set(KETEN_ERR_INVALID,
                        "fake-broker needs --listen, --log and --deliver or --deliver-bad-proof"),
            "options");
    }
    if (!h->me->has_log_key || strcmp(h->me->role, "broker") != 0) {
        return fail(
            keten_err_set(KETEN_ERR_WRONG_TYPE, "--home must hold the broker's keys"), "options");
    }
    fake_run fk;
    memset(&fk, 0, sizeof fk);
    fk.h = h;
    uint8_t(*ids)[KETEN_MSG_ID_BYTES] = calloc(dopt->n_files, KETEN_MSG_ID_BYTES);
    uint8_t **envs = calloc(dopt->n_files, sizeof *envs);
    size_t *env_lens = calloc(dopt->n_files, sizeof *env_lens);
    uint64_t *leaves = calloc(dopt->n_files, sizeof *leaves);
    int one = 1, zero = 0, rc;
    keten_err e = KETEN_OK;
    if (ids == NULL || envs == NULL || env_lens == NULL || leaves == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "%zu deliveries", dopt->n_files);
        goto out;
    }
    for (size_t i = 0; i < dopt->n_files && e == KETEN_OK; i++) {
        e = keten_file_read(dopt->files[i], KETEN_ENVELOPE_MAX, &envs[i], &env_lens[i]);
        if (e == KETEN_OK) {
            fake_msg_id(envs[i], env_lens[i], ids[i]);
        }
    }
    if (e != KETEN_OK || (e = fake_log_open(dopt->log_dir, &fk.lg)) != KETEN_OK) {
        goto out;
    }
    h->ctx = zmq_ctx_new();
    h->sock = h->ctx != NULL ? zmq_socket(h->ctx, ZMQ_ROUTER) : NULL;
    if (h->sock == NULL || zmq_setsockopt(h->sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(h->sock, ZMQ_CURVE_SECRETKEY, h->me->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(h->sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_bind(h->sock, h->listen) != 0) {
        e = zfail("binding the fake broker");
        goto out;
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("ready"));
    emit(o);
    /* Nothing is sent before the node's Hello. */
    fake_answer none = { .kind = "none" };
    if ((e = fake_listen(&fk, keten_mono_ms() + h->timeout_ms, NULL, &none, true)) != KETEN_OK) {
        goto out;
    }
    if (!fk.hello) {
        o = json_object();
        json_object_set_new(o, "event", json_string("timeout"));
        json_object_set_new(
            o, "waiting_for", json_string(fk.connected ? "the node's Hello" : "a node"));
        emit(o);
        goto out;
    }
    /* Its opening frames (credit, directory request, ...). */
    if ((e = fake_listen(&fk, keten_mono_ms() + HOSTILE_SETTLE_MS, NULL, &none, false))
        != KETEN_OK) {
        goto out;
    }
    if ((e = fake_batch(&fk, envs, env_lens, dopt->n_files, dopt->files, leaves)) != KETEN_OK) {
        goto out;
    }
    if ((rc = mdb_txn_begin(fk.lg.env, NULL, MDB_RDONLY, &fk.txn)) != 0) {
        e = mdb_fail(rc, "the fake broker's log");
        goto out;
    }
    /* The batch's checkpoint, proven from the node's Hello, before the
     * deliveries proven against it (not sent when the node holds it). */
    fk.hello_pending = false;
    if (fk.hello_size != fk.size && (e = fake_checkpoint(&fk, fk.hello_size)) != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < dopt->n_files; i++) {
        e = fake_deliver(&fk, envs[i], env_lens[i], leaves[i], dopt->bad_proof[i]);
        if (e != KETEN_OK) {
            goto out;
        }
        fake_answer a = { .kind = "none" };
        e = fake_listen(&fk, keten_mono_ms() + h->timeout_ms, ids[i], &a, false);
        if (e != KETEN_OK) {
            goto out;
        }
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(ids[i], KETEN_MSG_ID_BYTES, hex);
        o = json_object();
        json_object_set_new(o, "event", json_string("answer"));
        json_object_set_new(o, "index", json_integer((json_int_t)i));
        json_object_set_new(o, "file", json_string(dopt->files[i]));
        json_object_set_new(o, "msg_id", json_string(hex));
        json_object_set_new(o, "bad_proof", json_boolean(dopt->bad_proof[i]));
        json_object_set_new(o, "answer", json_string(a.kind));
        if (strcmp(a.kind, "stored") == 0 || strcmp(a.kind, "refused") == 0) {
            json_object_set_new(o, "receipt_valid", json_boolean(a.receipt_valid));
            json_object_set_new(o, "reason", json_string(a.reason));
        }
        emit(o);
    }
    /* Leaves that come late (each is printed as "leaf"). */
    e = fake_listen(&fk, keten_mono_ms() + HOSTILE_SETTLE_MS, NULL, &none, false);
    if (e == KETEN_OK) {
        o = json_object();
        json_object_set_new(o, "event", json_string("done"));
        emit(o);
    }
out:;
    int r = e != KETEN_OK ? fail(e, "fake broker") : 0;
    if (fk.txn != NULL) {
        mdb_txn_abort(fk.txn);
    }
    fake_log_close(&fk.lg);
    for (size_t i = 0; envs != NULL && i < dopt->n_files; i++) {
        free(envs[i]);
    }
    free(envs);
    free(env_lens);
    free(leaves);
    free(ids);
    return r;
}

/* ---- command line ------------------------------------------------------ */

static const char usage_text[]
    = "Usage: keten-hostile ACTION [OPTIONS]\n"
      "  flood --home DIR --anchor F --directory F --broker EP\n"
      "        (--to IDS --json F | --junk-bytes B) --count N [--kind K] [--credit C]\n"
      "        [--hold-ms T] [--drain-ms T [--drain-errors N]]\n"
      "  frame --kind KIND [--bytes N] --home DIR --anchor F --directory F --broker EP\n"
      "        [--listen-ms T]\n"
      "  plain --anchor F --directory F --broker EP [--listen-ms T]\n"
      "  wrong-server-key --home DIR --anchor F --directory F --broker EP [--listen-ms T]\n"
      "  unlisted-key --anchor F --directory F --broker EP [--sockets N] [--listen-ms T]\n"
      "  raw-socket --broker EP --bytes N [--listen-ms T]\n"
      "  fake-broker --home BROKER_HOME --anchor F --directory F --listen EP --log DIR\n"
      "              (--deliver F | --deliver-bad-proof F)... [--timeout-ms T]\n"
      "See the comment at the top of tests/tools/keten-hostile.c.\n";

static int usage(const char *what)
{
    fprintf(stderr, "keten-hostile: %s\n%s", what, usage_text);
    return 2;
}

int main(int argc, char **argv)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    keten_cli_init("keten-hostile");
    if (argc < 2) {
        return usage("no action");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    const char *action = argv[1];
    hostile h;
    memset(&h, 0, sizeof h);
    h.timeout_ms = HOSTILE_TIMEOUT_DEFAULT_MS;
    h.listen_ms = HOSTILE_LISTEN_DEFAULT_MS;
    flood_opts fo = { .count = 1 };
    deliver_opts dopt = { .n_files = 0 };
    const char *kind = NULL;
    uint64_t bytes = 1024, sockets = 1;
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "anchor", required_argument, NULL, 'a' },
        { "directory", required_argument, NULL, 'd' },
        { "broker", required_argument, NULL, 'b' },
        { "listen", required_argument, NULL, 'L' },
        { "timeout-ms", required_argument, NULL, 't' },
        { "listen-ms", required_argument, NULL, 'l' },
        { "to", required_argument, NULL, 'o' },
        { "json", required_argument, NULL, 'j' },
        { "kind", required_argument, NULL, 'k' },
        { "count", required_argument, NULL, 'n' },
        { "credit", required_argument, NULL, 'c' },
        { "hold-ms", required_argument, NULL, 'w' },
        { "drain-ms", required_argument, NULL, 'r' },
        { "drain-errors", required_argument, NULL, 'E' },
        { "junk-bytes", required_argument, NULL, 'J' },
        { "bytes", required_argument, NULL, 'B' },
        { "deliver", required_argument, NULL, 'D' },
        { "deliver-bad-proof", required_argument, NULL, 'P' },
        { "log", required_argument, NULL, 'g' },
        { "sockets", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    optind = 2;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            h.home = optarg;
            break;
        case 'a':
            h.anchor_path = optarg;
            break;
        case 'd':
            h.dir_path = optarg;
            break;
        case 'b':
            h.broker = optarg;
            break;
        case 'L':
            h.listen = optarg;
            break;
        case 'o':
            fo.to = optarg;
            break;
        case 'j':
            fo.json_path = optarg;
            break;
        case 'k':
            fo.kind = optarg;
            kind = optarg;
            break;
        case 't':
            if (!keten_cli_parse_uint(optarg, 1, 3600000, &h.timeout_ms)) {
                return usage("--timeout-ms");
            }
            break;
        case 'l':
            if (!keten_cli_parse_uint(optarg, 0, 3600000, &h.listen_ms)) {
                return usage("--listen-ms");
            }
            break;
        case 'n':
            if (!keten_cli_parse_uint(optarg, 1, HOSTILE_COUNT_MAX, &fo.count)) {
                return usage("--count");
            }
            break;
        case 'c':
            if (!keten_cli_parse_uint(optarg, 0, UINT32_MAX, &fo.credit)) {
                return usage("--credit");
            }
            break;
        case 'w':
            if (!keten_cli_parse_uint(optarg, 0, 3600000, &fo.hold_ms)) {
                return usage("--hold-ms");
            }
            break;
        case 'r':
            if (!keten_cli_parse_uint(optarg, 0, 3600000, &fo.drain_ms)) {
                return usage("--drain-ms");
            }
            break;
        case 'E':
            if (!keten_cli_parse_uint(optarg, 1, 1000000, &fo.drain_errors)) {
                return usage("--drain-errors");
            }
            break;
        case 'J':
            if (!keten_cli_parse_uint(optarg, 1, KETEN_FRAME_MAX - 64, &fo.junk_bytes)) {
                return usage("--junk-bytes");
            }
            break;
        case 'B':
            if (!keten_cli_parse_uint(optarg, 1, HOSTILE_RAW_MAX, &bytes)) {
                return usage("--bytes");
            }
            break;
        case 'D':
        case 'P':
            if (dopt.n_files == HOSTILE_DELIVER_MAX) {
                return usage("too many --deliver and --deliver-bad-proof");
            }
            dopt.bad_proof[dopt.n_files] = c == 'P';
            dopt.files[dopt.n_files++] = optarg;
            break;
        case 'g':
            dopt.log_dir = optarg;
            break;
        case 's':
            if (!keten_cli_parse_uint(optarg, 1, HOSTILE_SOCKETS_MAX, &sockets)) {
                return usage("--sockets");
            }
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            return usage("unknown option or missing value");
        }
    }
    if (optind != argc) {
        return usage("unexpected operand");
    }
    bool fake = strcmp(action, "fake-broker") == 0;
    bool raw = strcmp(action, "raw-socket") == 0;
    if (!fake && h.broker == NULL) {
        return usage("--broker is needed");
    }
    int r;
    if (raw) {
        r = act_raw_socket(&h, bytes);
        close_all(&h);
        return r;
    }
    bool plain = strcmp(action, "plain") == 0;
    keten_err e = load(&h, !plain && strcmp(action, "unlisted-key") != 0);
    if (e != KETEN_OK) {
        r = fail(e, "load");
        close_all(&h);
        return r;
    }
    if (strcmp(action, "flood") == 0) {
        r = act_flood(&h, &fo);
    } else if (strcmp(action, "frame") == 0) {
        r = act_frame(&h, kind, bytes);
    } else if (plain) {
        r = act_unauth(&h, SEC_PLAIN, action);
    } else if (strcmp(action, "wrong-server-key") == 0) {
        r = act_unauth(&h, SEC_CURVE_WRONG_SERVER, action);
    } else if (strcmp(action, "unlisted-key") == 0) {
        r = act_unlisted(&h, sockets);
    } else if (fake) {
        r = act_fake_broker(&h, &dopt);
    } else {
        r = usage("unknown action");
    }
    close_all(&h);
    return r;
}
