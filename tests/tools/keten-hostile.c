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
 *       "drained" with how many frames were still there to read. What was
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
 *               --listen ENDPOINT --deliver FILE [--deliver FILE ...]
 *               [--leaf N] [--timeout-ms T]
 *       a CurveZMQ server with the broker's transport key (so the node
 *       connects), no ZAP handler. Prints "ready", waits for a node's Hello,
 *       builds a log in memory: N filler records, then the "submitted"
 *       record of each envelope file (as the broker would write it, as far as
 *       the file parses), signs its checkpoint with the broker's log key and
 *       sends it (old_size 0: a node with an older reference asks again and
 *       this run says so in "hello"), then delivers each envelope in turn
 *       with the proof of its record and prints "answer" for each:
 *       "stored" or "refused" (a receipt batch leaf naming the message, with
 *       "reason" and whether the batch verifies under the recipient's
 *       certificate), "credit" (the node returned its credit without a leaf)
 *       or "none" (timeout). One run is one log: a node that was sent
 *       another run's checkpoint of the same size alarms (inconsistent).
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
    json_object_set_new(o, "error", json_string(keten_strerror(e)));
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
    if ((e = keten_anchor_load(h->anchor_path, &h->anchor)) != KETEN_OK
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
    uint64_t count, credit, hold_ms, drain_ms, junk_bytes;
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
        e = keten_kind_parse(fo->kind, &kind);
    }
    if (e == KETEN_OK && fo->junk_bytes == 0) {
        if ((e = keten_file_read(fo->json_path, KETEN_SIGNAL_JSON_MAX, &json, &json_len))
                != KETEN_OK
            || (e = keten_signal_from_json((const char *)json, json_len, &sig)) != KETEN_OK
            || (e = keten_signal_pack(sig, &payload, &payload_len)) != KETEN_OK
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
        keten_seal_params sp = {
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
    keten_signal_free(&sig);
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
        uint64_t deadline = keten_mono_ms() + fo->drain_ms;
        /* Count without printing every frame. */
        while (keten_mono_ms() < deadline) {
            zmq_pollitem_t it = { h->sock, 0, ZMQ_POLLIN, 0 };
            uint64_t now = keten_mono_ms();
            if (zmq_poll(&it, 1, (long)(deadline > now ? deadline - now : 0)) <= 0) {
                continue;
            }
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, h->sock, ZMQ_DONTWAIT) >= 0) {
                h->frames++;
            }
            zmq_msg_close(&m);
        }
        o = json_object();
        json_object_set_new(o, "event", json_string("drained"));
        json_object_set_new(o, "frames", json_integer((json_int_t)h->frames));
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

typedef struct deliver_opts {
    const char *files[HOSTILE_DELIVER_MAX];
    size_t n_files;
    uint64_t leaf;
} deliver_opts;

typedef struct fake_answer {
    const char *kind; /* "stored", "refused", "credit", "none" */
    bool receipt_valid;
    char reason[48];
    char msg_id[KETEN_MSG_ID_HEX_BYTES];
} fake_answer;

/* Look at one frame from the node: is it the answer to the delivery of
 * msg_id? */
static bool fake_frame(hostile *h, const uint8_t *data, size_t len,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], fake_answer *a)
{
    Keten__Frame *f = NULL;
    if (KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f) != KETEN_OK) {
        keten_err_clear();
        return false;
    }
    bool answered = false;
    if (f->body_case == KETEN__FRAME__BODY_CREDIT && f->credit->credit == 1) {
        a->kind = "credit";
        answered = true;
    } else if (f->body_case == KETEN__FRAME__BODY_RECEIPTS) {
        const Keten__ReceiptBatch *rb = f->receipts;
        for (size_t i = 0; i < rb->n_leaves && !answered; i++) {
            const Keten__ReceiptLeaf *lf = rb->leaves[i];
            if (lf->msg_id.len != KETEN_MSG_ID_BYTES
                || memcmp(lf->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) != 0) {
                continue;
            }
            answered = true;
            a->kind = lf->outcome == KETEN__OUTCOME__OUTCOME_STORED ? "stored" : "refused";
            keten_hex(msg_id, KETEN_MSG_ID_BYTES, a->msg_id);
            const ProtobufCEnumValue *ev
                = protobuf_c_enum_descriptor_get_value(&keten__reason__descriptor, lf->reason);
            snprintf(a->reason, sizeof a->reason, "%s",
                ev != NULL && strncmp(ev->name, "REASON_", 7) == 0 ? ev->name + 7 : "UNKNOWN");
            Keten__ReceiptBatchHead *peek = NULL, *head = NULL;
            keten_hash *hashes = NULL;
            if (KETEN_PB_UNPACK(keten__receipt_batch_head, rb->head.data, rb->head.len,
                    KETEN_RECEIPT_HEAD_MAX, "receipt batch head", &peek)
                == KETEN_OK) {
                const Keten__NodeCert *cert = keten_directory_find_id(h->dir, peek->recipient);
                a->receipt_valid = cert != NULL
                    && keten_receipt_batch_verify(
                           cert, keten_directory_network(h->dir), rb, &head, &hashes)
                        == KETEN_OK;
            }
            keten_err_clear();
            free(hashes);
            keten_pb_free((ProtobufCMessage **)(void *)&head);
            keten_pb_free((ProtobufCMessage **)(void *)&peek);
        }
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

/* The fake broker's log, in memory. */
typedef struct fake_log {
    uint8_t **leaf;
    size_t *len;
    keten_hash *hash;
    size_t n;
} fake_log;

static void fake_log_clear(fake_log *lg)
{
    for (size_t i = 0; i < lg->n; i++) {
        free(lg->leaf[i]);
    }
    free(lg->leaf);
    free(lg->len);
    free(lg->hash);
    memset(lg, 0, sizeof *lg);
}

/* Append rec (seq set here). */
static keten_err fake_log_add(fake_log *lg, size_t cap, Keten__AuditRecord *rec)
{
    if (lg->n == cap) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "the fake log holds %zu records", cap);
    }
    rec->seq = lg->n;
    keten_err e = keten_pb_pack(&rec->base, &lg->leaf[lg->n], &lg->len[lg->n]);
    if (e == KETEN_OK) {
        keten_merkle_leaf_hash(lg->leaf[lg->n], lg->len[lg->n], lg->hash[lg->n]);
        lg->n++;
    }
    return e;
}

/* The "submitted" record of the envelope bytes, as far as they parse. */
static keten_err fake_submitted(hostile *h, fake_log *lg, size_t cap, const uint8_t *env,
    size_t env_len, uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    Keten__Envelope *e_msg = NULL;
    Keten__Header *hd = NULL;
    Keten__AuditRecord rec = KETEN__AUDIT_RECORD__INIT;
    uint8_t ct_hash[KETEN_HASH_BYTES], env_hash[KETEN_HASH_BYTES];
    memset(msg_id, 0, KETEN_MSG_ID_BYTES);
    rec.event = KETEN__EVENT__EVENT_SUBMITTED;
    rec.time = keten_now_ms();
    rec.directory_version = keten_directory_version(h->dir);
    crypto_hash_sha256(env_hash, env, env_len);
    rec.envelope_hash.data = env_hash;
    rec.envelope_hash.len = sizeof env_hash;
    if (KETEN_PB_UNPACK(keten__envelope, env, env_len, KETEN_ENVELOPE_MAX, "envelope", &e_msg)
            == KETEN_OK
        && KETEN_PB_UNPACK(keten__header, e_msg->header.data, e_msg->header.len,
               KETEN_ENVELOPE_MAX, "header", &hd)
            == KETEN_OK) {
        if (hd->msg_id.len == KETEN_MSG_ID_BYTES) {
            memcpy(msg_id, hd->msg_id.data, KETEN_MSG_ID_BYTES);
        }
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
    keten_err e = fake_log_add(lg, cap, &rec);
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

/* The log's checkpoint, signed with the broker's log key, as a frame. */
static keten_err fake_checkpoint(hostile *h, const uint8_t *rid, size_t rid_len, const fake_log *lg)
{
    keten_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    snprintf(ck.origin, sizeof ck.origin, "keten/%s", keten_directory_network(h->dir));
    ck.size = lg->n;
    keten_merkle_root((const keten_hash *)lg->hash, lg->n, ck.root);
    ck.dir_version = keten_directory_version(h->dir);
    memcpy(ck.dir_hash, keten_directory_hash(h->dir), KETEN_HASH_BYTES);
    char *note = NULL;
    keten_err e = keten_checkpoint_sign(&ck, h->me->id, h->me->log_sk, &note);
    if (e != KETEN_OK) {
        return e;
    }
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    e = fake_send(h, rid, rid_len, &f);
    free(note);
    return e;
}

static keten_err fake_deliver(hostile *h, const uint8_t *rid, size_t rid_len, const uint8_t *env,
    size_t env_len, const fake_log *lg, uint64_t leaf)
{
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    size_t path_len = 0;
    keten_err e = keten_merkle_inclusion_proof(
        (const keten_hash *)lg->hash, lg->n, leaf, path, &path_len);
    if (e != KETEN_OK) {
        return e;
    }
    keten_leafproof_buf pb;
    keten_leafproof_set(
        &pb, lg->n, leaf, lg->leaf[leaf], lg->len[leaf], (const keten_hash *)path, path_len);
    Keten__Deliver d = KETEN__DELIVER__INIT;
    d.envelope.data = (uint8_t *)env;
    d.envelope.len = env_len;
    d.proof = &pb.msg;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_DELIVER;
    f.deliver = &d;
    return fake_send(h, rid, rid_len, &f);
}

static int act_fake_broker(hostile *h, const deliver_opts *dopt)
{
    if (h->listen == NULL || dopt->n_files == 0) {
        return fail(keten_err_set(KETEN_ERR_INVALID, "fake-broker needs --listen and --deliver"),
            "options");
    }
    if (!h->me->has_log_key || strcmp(h->me->role, "broker") != 0) {
        return fail(
            keten_err_set(KETEN_ERR_WRONG_TYPE, "--home must hold the broker's keys"), "options");
    }
    int one = 1, zero = 0;
    h->ctx = zmq_ctx_new();
    h->sock = h->ctx != NULL ? zmq_socket(h->ctx, ZMQ_ROUTER) : NULL;
    if (h->sock == NULL || zmq_setsockopt(h->sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(h->sock, ZMQ_CURVE_SECRETKEY, h->me->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(h->sock, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_bind(h->sock, h->listen) != 0) {
        return fail(zfail("binding the fake broker"), "listen");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("ready"));
    emit(o);
    uint8_t rid[256];
    size_t rid_len = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!fake_recv(h, keten_mono_ms() + h->timeout_ms, rid, &rid_len, &data, &len)) {
        o = json_object();
        json_object_set_new(o, "event", json_string("timeout"));
        json_object_set_new(o, "waiting_for", json_string("a node"));
        emit(o);
        return 0;
    }
    o = json_object();
    json_object_set_new(o, "event", json_string("connected"));
    emit(o);
    /* The node's Hello and opening frames (credit, directory request, ...). */
    bool hello = false;
    uint64_t hello_size = 0;
    {
        Keten__Frame *f0 = NULL;
        if (KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f0) == KETEN_OK
            && f0->body_case == KETEN__FRAME__BODY_HELLO) {
            hello = true;
            hello_size = f0->hello->tree_size;
        }
        keten_err_clear();
        keten_pb_free((ProtobufCMessage **)(void *)&f0);
    }
    free(data);
    uint8_t r2[256];
    size_t r2_len = 0;
    uint64_t settle = keten_mono_ms() + HOSTILE_SETTLE_MS;
    while (fake_recv(h, settle, r2, &r2_len, &data, &len)) {
        Keten__Frame *f0 = NULL;
        if (!hello
            && KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f0) == KETEN_OK
            && f0->body_case == KETEN__FRAME__BODY_HELLO) {
            hello = true;
            hello_size = f0->hello->tree_size;
        }
        keten_err_clear();
        keten_pb_free((ProtobufCMessage **)(void *)&f0);
        free(data);
    }
    o = json_object();
    json_object_set_new(o, "event", json_string("hello"));
    json_object_set_new(o, "received", json_boolean(hello));
    json_object_set_new(o, "tree_size", json_integer((json_int_t)hello_size));
    emit(o);
    size_t cap = (size_t)dopt->leaf + dopt->n_files;
    fake_log lg = { 0 };
    lg.leaf = calloc(cap, sizeof *lg.leaf);
    lg.len = calloc(cap, sizeof *lg.len);
    lg.hash = calloc(cap, sizeof *lg.hash);
    uint8_t(*ids)[KETEN_MSG_ID_BYTES] = calloc(dopt->n_files, KETEN_MSG_ID_BYTES);
    uint8_t **envs = calloc(dopt->n_files, sizeof *envs);
    size_t *env_lens = calloc(dopt->n_files, sizeof *env_lens);
    keten_err e = lg.leaf == NULL || lg.len == NULL || lg.hash == NULL || ids == NULL
            || envs == NULL || env_lens == NULL
        ? KETEN_ERR_NOMEM
        : KETEN_OK;
    for (uint64_t i = 0; i < dopt->leaf && e == KETEN_OK; i++) {
        Keten__AuditRecord filler = KETEN__AUDIT_RECORD__INIT;
        filler.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
        filler.time = keten_now_ms();
        filler.node = (char *)"filler";
        e = fake_log_add(&lg, cap, &filler);
    }
    for (size_t i = 0; i < dopt->n_files && e == KETEN_OK; i++) {
        e = keten_file_read(dopt->files[i], KETEN_ENVELOPE_MAX, &envs[i], &env_lens[i]);
        if (e == KETEN_OK) {
            e = fake_submitted(h, &lg, cap, envs[i], env_lens[i], ids[i]);
        }
    }
    if (e == KETEN_OK) {
        e = fake_checkpoint(h, rid, rid_len, &lg);
    }
    int r = 0;
    for (size_t i = 0; i < dopt->n_files && e == KETEN_OK; i++) {
        e = fake_deliver(h, rid, rid_len, envs[i], env_lens[i], &lg, dopt->leaf + i);
        if (e != KETEN_OK) {
            break;
        }
        fake_answer a = { .kind = "none" };
        uint64_t deadline = keten_mono_ms() + h->timeout_ms;
        while (fake_recv(h, deadline, r2, &r2_len, &data, &len)) {
            bool done = fake_frame(h, data, len, ids[i], &a);
            free(data);
            if (done) {
                break;
            }
        }
        o = json_object();
        json_object_set_new(o, "event", json_string("answer"));
        json_object_set_new(o, "index", json_integer((json_int_t)i));
        json_object_set_new(o, "file", json_string(dopt->files[i]));
        json_object_set_new(o, "answer", json_string(a.kind));
        if (strcmp(a.kind, "stored") == 0 || strcmp(a.kind, "refused") == 0) {
            json_object_set_new(o, "receipt_valid", json_boolean(a.receipt_valid));
            json_object_set_new(o, "msg_id", json_string(a.msg_id));
            json_object_set_new(o, "reason", json_string(a.reason));
        }
        emit(o);
    }
    if (e != KETEN_OK) {
        r = fail(e, "fake broker");
    }
    for (size_t i = 0; envs != NULL && i < dopt->n_files; i++) {
        free(envs[i]);
    }
    free(envs);
    free(env_lens);
    free(ids);
    fake_log_clear(&lg);
    return r;
}

/* ---- command line ------------------------------------------------------ */

static const char usage_text[]
    = "Usage: keten-hostile ACTION [OPTIONS]\n"
      "  flood --home DIR --anchor F --directory F --broker EP\n"
      "        (--to IDS --json F | --junk-bytes B) --count N [--kind K] [--credit C]\n"
      "        [--hold-ms T] [--drain-ms T]\n"
      "  frame --kind KIND [--bytes N] --home DIR --anchor F --directory F --broker EP\n"
      "        [--listen-ms T]\n"
      "  plain --anchor F --directory F --broker EP [--listen-ms T]\n"
      "  wrong-server-key --home DIR --anchor F --directory F --broker EP [--listen-ms T]\n"
      "  unlisted-key --anchor F --directory F --broker EP [--sockets N] [--listen-ms T]\n"
      "  raw-socket --broker EP --bytes N [--listen-ms T]\n"
      "  fake-broker --home BROKER_HOME --anchor F --directory F --listen EP --deliver F...\n"
      "              [--leaf N] [--timeout-ms T]\n"
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
        { "junk-bytes", required_argument, NULL, 'J' },
        { "bytes", required_argument, NULL, 'B' },
        { "deliver", required_argument, NULL, 'D' },
        { "leaf", required_argument, NULL, 'f' },
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
            if (dopt.n_files == HOSTILE_DELIVER_MAX) {
                return usage("too many --deliver");
            }
            dopt.files[dopt.n_files++] = optarg;
            break;
        case 'f':
            if (!keten_cli_parse_uint(optarg, 0, UINT64_MAX / 2, &dopt.leaf)) {
                return usage("--leaf");
            }
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
