/*
 * keten-testpeer - a scripted broker peer for integration tests and
 * benchmarks. It loads a node identity (--home DIR) and a directory, connects
 * to a broker with CurveZMQ, performs ONE action, and prints what happened as
 * JSON lines on standard output (one object per line, "event" first).
 *
 *   keten-testpeer [COMMON] ACTION [ACTION OPTIONS]
 *
 * COMMON: --home DIR --anchor FILE --directory FILE --broker ENDPOINT
 *         [--timeout-ms T (default 5000)] [--sign-home DIR (sign envelopes with
 *         another node's identity: a spoofing sender)] [--transport-key-only
 *         (connect with a fresh transport key that no directory lists)]
 *         [--cosign (cosign every witness checkpoint that verifies)]
 *         [--no-hello (send no Hello first)] [--hello-size N (Hello names N
 *         instead of 0)] [--hold-until FILE (once connected and Hello sent,
 *         wait until FILE exists before the action; at most 60 s)]
 *         [--no-notice-ack (do not confirm forwarded receipts and expiry notices;
 *         by default each is confirmed at once with a NoticeAck, as a node does)]
 *         [--credit-first C (send Credit{C} before the Hello, on connecting)]
 *
 * ACTIONS
 *   submit --to IDS --json FILE [--kind K] [--count N] [--created-at-offset-ms N]
 *          [--expires-in-ms N] [--save-envelope OUT] [--wait-receipts N]
 *       seal N envelopes and submit them; print "sent", then "ack" (its leaf
 *       proof checked against the checkpoint it names, which must be one
 *       this peer accepted, and its record against the envelope sent) or
 *       "error" for each; with --wait-receipts also wait for N receipt
 *       notices
 *   seal --to IDS --json FILE --out OUT [same sealing options]
 *       write one sealed envelope to OUT without connecting
 *   submit-raw FILE, replay FILE
 *       send the bytes of FILE as a Submit envelope
 *   connect-only [--listen-ms T] [--poke-after-refusal N]
 *       send credit 0 and print every frame that arrives within T ms, then
 *       "summary" with the count; with --poke-after-refusal, once an error
 *       that ends the connection arrives (no msg_id, a directory version),
 *       send N directory requests on the same connection and go on
 *       listening (the broker must answer each with the same error and
 *       nothing else); it stops when the N answers are in
 *   recv --count N [--credit C] [--no-receipt] [--refuse REASON] [--rehello K]
 *       send credit, check every delivery's proof and open it
 *       (keten_envelope_open), print "deliver" per message, and answer the
 *       deliveries read together with one signed receipt batch (outcome
 *       stored, or refused with REASON, e.g. policy); stop after N or the
 *       timeout (with --credit-first the credit went before the Hello, and
 *       credit 0 is sent here); with --rehello, once the N are in, send K
 *       more Hellos on the same connection, each followed by credit C and
 *       a directory request, reading until that is answered before the
 *       next Hello (so each Hello is in a broker batch of its own): every
 *       delivery that comes again meanwhile is printed and counted
 *   receipt-batch --envelope FILE [--refuse REASON] [--repeat N]
 *                 [--tamper leaf|count|empty|many]
 *       send one receipt batch with one leaf naming the envelope in FILE
 *       (its msg_id and hash), signed with this node's key (with
 *       --sign-home: with that node's key, the head still naming this
 *       node); --repeat N: the signed batch holds that leaf N times (1 to
 *       1024: msg_ids repeated within a batch); --tamper leaf: the leaf sent
 *       differs from the one signed, so the root does not match the leaves;
 *       count: one leaf more is sent than the signed head counts; empty: no
 *       leaf is sent; many: 1025 leaves are sent (KETEN_RECEIPT_BATCH_MAX + 1).
 *       Prints "receipt_batch" and what comes back within --listen-ms
 *   cosign --db BROKER_STORE
 *       read the newest witness checkpoint stored in the broker's store,
 *       cosign it with this node's key, send the Cosignature (request_id 1;
 *       before any Hello with --no-hello), then a directory request on the
 *       same connection; print "cosignature" and every frame until the
 *       request is answered
 *   checkpoints --db BROKER_STORE
 *       (no connection) print every stored witness checkpoint: its tree size
 *       and the key names of its signature lines, in order
 *   proof --leaf L|next
 *       wait for a checkpoint that covers leaf L (next: the first leaf after
 *       the first checkpoint this connection gets that is a record of this
 *       node's own traffic: a leaf refused SENDER_MISMATCH, another
 *       partner's record, is followed by the one after it), ask for its
 *       inclusion proof (and a consistency proof from the first checkpoint
 *       seen, if older), verify both, print "proof" (or the "error" that
 *       refuses the request)
 *   dir-request --after V
 *       ask for the directory versions after V, print their versions
 *   notice-ack --leaf L
 *       send a NoticeAck naming leaf L (print "notice_ack"), then a directory
 *       request, and print its answer: the connection still serves
 *   audit --db DIR
 *       (no connection) print every audit record of the broker store DIR as
 *       JSON: seq, event, msg_id, sender, node, recipients, reason, rule
 *
 * Every connection starts with Hello{0} (see --no-hello, --hello-size). A
 * CheckpointFrame is accepted only when its note verifies under the
 * broker's log key and its consistency proof leads from a checkpoint this
 * peer accepted before (old_size 0 only before the first); its "checkpoint"
 * line says so ("valid", "consistent"). Every proof (ack, duplicate error,
 * delivery, notice) is checked against the root of an accepted checkpoint
 * of its tree size ("valid", "against_latest": of the latest one).
 *
 * Exit code: 0 when the action ran (its results are in the JSON), 1 when it
 * could not run, 2 for usage errors.
 */
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

#define PEER_TIMEOUT_DEFAULT_MS 5000
#define PEER_GRACE_MS 300
#define PEER_LIFETIME_DEFAULT_MS (24ull * 3600ull * 1000ull)
#define PEER_COUNT_MAX 100000
#define PEER_KEPT 64 /* accepted checkpoints remembered */
#define PEER_SENT_MAX 1024 /* envelopes remembered to check their acks */

typedef struct kept_cp {
    uint64_t size;
    keten_hash root;
} kept_cp;

typedef struct sent_env {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t *env;
    size_t len;
} sent_env;

typedef struct peer {
    const char *home, *anchor_path, *dir_path, *broker, *sign_home, *hold_until;
    bool transport_only, cosign, no_notice_ack, no_hello;
    uint64_t hello_size;
    uint64_t credit_first; /* 0: no credit before the Hello */
    uint64_t timeout_ms;
    keten_identity *me; /* transport and receiving identity */
    keten_identity *signer; /* envelope signer (me unless --sign-home) */
    Keten__Anchor *anchor;
    keten_directory *dir;
    const Keten__NodeCert *broker_cert;
    void *ctx, *sock;
    uint64_t next_request;
    /* checkpoints */
    bool have_first;
    keten_checkpoint first, latest;
    bool have_latest;
    kept_cp kept[PEER_KEPT];
    size_t n_kept, kept_next;
    /* envelopes sent (acks are checked against them) */
    sent_env sent[PEER_SENT_MAX];
    size_t n_sent;
    /* receipt leaves not yet sent */
    keten_receipt_item pending[KETEN_RECEIPT_BATCH_MAX];
    size_t n_pending;
    Keten__Reason refuse; /* REASON_NONE: stored */
    size_t batches;
    /* counters */
    size_t frames, answers, receipts, deliveries, pushes;
    size_t refusals; /* errors that end the connection (no msg_id, a directory version) */
} peer;

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

static json_t *hexval(const uint8_t *b, size_t len)
{
    char *h = malloc(2 * len + 1);
    if (h == NULL) {
        return json_null();
    }
    keten_hex(b, len, h);
    json_t *v = json_string(h);
    free(h);
    return v;
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

/* ---- set-up ------------------------------------------------------------ */

static keten_err load_identity(const char *home, keten_identity **out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/identity.secret", home);
    return keten_cli_identity_open(path, NULL, out);
}

static keten_err peer_load(peer *p)
{
    keten_err e;
    if ((e = keten_directory_anchor_load(p->anchor_path, &p->anchor)) != KETEN_OK
        || (e = keten_directory_load(p->anchor, p->dir_path, keten_now_ms(), &p->dir))
            != KETEN_OK) {
        return e;
    }
    if (p->home != NULL && (e = load_identity(p->home, &p->me)) != KETEN_OK) {
        return e;
    }
    if (p->sign_home != NULL) {
        if ((e = load_identity(p->sign_home, &p->signer)) != KETEN_OK) {
            return e;
        }
    }
    p->broker_cert = keten_directory_broker(p->dir);
    if (p->broker_cert == NULL) {
        return keten_err_set(KETEN_ERR_NOT_FOUND, "the directory lists no broker");
    }
    return KETEN_OK;
}

static keten_err send_credit(peer *p, uint32_t n);

static keten_err send_hello(peer *p, uint64_t tree_size)
{
    Keten__Hello h = KETEN__HELLO__INIT;
    h.tree_size = tree_size;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_HELLO;
    f.hello = &h;
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&f.base, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    int rc = zmq_send(p->sock, buf, len, 0);
    free(buf);
    if (rc < 0) {
        return keten_err_set(KETEN_ERR_IO, "sending Hello: %s", zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

static keten_err peer_connect(peer *p)
{
    uint8_t pk[KETEN_CURVE_KEY_BYTES], sk[KETEN_CURVE_KEY_BYTES];
    if (p->transport_only || p->me == NULL) {
        crypto_box_keypair(pk, sk);
    } else {
        memcpy(pk, p->me->transport_pk, sizeof pk);
        memcpy(sk, p->me->transport_sk, sizeof sk);
    }
    p->ctx = zmq_ctx_new();
    p->sock = p->ctx != NULL ? zmq_socket(p->ctx, ZMQ_DEALER) : NULL;
    int linger = 1000;
    int64_t maxmsg = (int64_t)KETEN_FRAME_MAX;
    if (p->sock == NULL
        || zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, p->broker_cert->transport_pk.data,
               KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, pk, sizeof pk) != 0
        || zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, sk, sizeof sk) != 0
        || zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0
        || zmq_connect(p->sock, p->broker) != 0) {
        sodium_memzero(sk, sizeof sk);
        return keten_err_set(
            KETEN_ERR_IO, "connecting to %s: %s", p->broker, zmq_strerror(zmq_errno()));
    }
    sodium_memzero(sk, sizeof sk);
    keten_err e;
    if (p->credit_first > 0 && (e = send_credit(p, (uint32_t)p->credit_first)) != KETEN_OK) {
        return e;
    }
    if (!p->no_hello && (e = send_hello(p, p->hello_size)) != KETEN_OK) {
        return e;
    }
    if (p->hold_until != NULL) {
        /* Connected (ZeroMQ keeps the connection up meanwhile); nothing is
         * read until the test says go. */
        for (int i = 0; access(p->hold_until, F_OK) != 0; i++) {
            if (i == 1200) {
                return keten_err_set(
                    KETEN_ERR_NOT_FOUND, "--hold-until: %s did not appear in 60 s", p->hold_until);
            }
            struct timespec ts = { 0, 50 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    return KETEN_OK;
}

static void peer_close(peer *p)
{
    for (size_t i = 0; i < p->n_sent; i++) {
        free(p->sent[i].env);
    }
    if (p->sock != NULL) {
        zmq_close(p->sock);
    }
    if (p->ctx != NULL) {
        zmq_ctx_term(p->ctx);
    }
    keten_identity_destroy(&p->me);
    keten_identity_destroy(&p->signer);
    keten_directory_destroy(&p->dir);
    keten_pb_free((ProtobufCMessage **)(void *)&p->anchor);
}

static keten_err send_frame(peer *p, Keten__Frame *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack(&f->base, &buf, &len);
    if (e != KETEN_OK) {
        return e;
    }
    int rc = zmq_send(p->sock, buf, len, 0);
    free(buf);
    if (rc < 0) {
        return keten_err_set(KETEN_ERR_IO, "sending: %s", zmq_strerror(zmq_errno()));
    }
    return KETEN_OK;
}

static keten_err send_credit(peer *p, uint32_t n)
{
    Keten__Credit c = KETEN__CREDIT__INIT;
    c.credit = n;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &c;
    return send_frame(p, &f);
}

static keten_err send_submit(peer *p, const uint8_t *env, size_t len, uint64_t *rid)
{
    Keten__Submit s = KETEN__SUBMIT__INIT;
    s.envelope.data = (uint8_t *)env;
    s.envelope.len = len;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = *rid = ++p->next_request;
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &s;
    return send_frame(p, &f);
}

static keten_err send_notice_ack(peer *p, uint64_t leaf)
{
    uint64_t leaves[1] = { leaf };
    Keten__NoticeAck na = KETEN__NOTICE_ACK__INIT;
    na.n_leaf_indexes = 1;
    na.leaf_indexes = leaves;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_NOTICE_ACK;
    f.notice_ack = &na;
    return send_frame(p, &f);
}

/* Confirm a notice unless --no-notice-ack; says so in o. */
static void confirm_notice(peer *p, json_t *o, uint64_t leaf)
{
    if (!p->no_notice_ack) {
        json_object_set_new(o, "confirmed", json_boolean(send_notice_ack(p, leaf) == KETEN_OK));
    }
}

/* ---- handling frames --------------------------------------------------- */

typedef struct recv_opts {
    bool receipt;
} recv_opts;

/* The root of an accepted checkpoint of size, if kept. */
static bool kept_root(const peer *p, uint64_t size, keten_hash root)
{
    for (size_t i = 0; i < p->n_kept; i++) {
        if (p->kept[i].size == size) {
            memcpy(root, p->kept[i].root, KETEN_HASH_BYTES);
            return true;
        }
    }
    return false;
}

static void keep(peer *p, const keten_checkpoint *cp)
{
    keten_hash r;
    if (kept_root(p, cp->size, r)) {
        return;
    }
    p->kept[p->kept_next].size = cp->size;
    memcpy(p->kept[p->kept_next].root, cp->root, KETEN_HASH_BYTES);
    p->kept_next = (p->kept_next + 1) % PEER_KEPT;
    if (p->n_kept < PEER_KEPT) {
        p->n_kept++;
    }
}

/* Check a LeafProof against the accepted checkpoint of its size; describe
 * it in o; *rec_out (may be NULL) is the record when it verified. */
static bool check_proof(
    const peer *p, const Keten__LeafProof *lp, json_t *o, Keten__AuditRecord **rec_out)
{
    Keten__AuditRecord *rec = NULL;
    bool valid = false;
    if (lp == NULL) {
        json_object_set_new(o, "proof", json_string("missing"));
    } else {
        keten_hash root;
        bool known = kept_root(p, lp->tree_size, root);
        json_object_set_new(o, "leaf", json_integer((json_int_t)lp->leaf_index));
        json_object_set_new(o, "tree_size", json_integer((json_int_t)lp->tree_size));
        json_object_set_new(o, "known_checkpoint", json_boolean(known));
        json_object_set_new(
            o, "against_latest", json_boolean(p->have_latest && p->latest.size == lp->tree_size));
        if (known) {
            keten_err e = keten_logproof_verify(lp, root, &rec);
            valid = e == KETEN_OK;
            if (!valid) {
                json_object_set_new(o, "proof_error", json_string(keten_err_detail()));
                keten_err_clear();
            }
        }
    }
    json_object_set_new(o, "proof_valid", json_boolean(valid));
    if (rec != NULL) {
        json_object_set_new(
            o, "record_event", json_string(enum_name(&keten__event__descriptor, rec->event, "EVENT_")));
        if (rec->msg_id.len > 0) {
            json_object_set_new(o, "msg_id", hexval(rec->msg_id.data, rec->msg_id.len));
        }
    }
    if (rec_out != NULL) {
        *rec_out = rec;
    } else {
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
    }
    return valid;
}

/* Is rec the "submitted" record of an envelope this peer sent? */
static bool record_is_sent(const peer *p, const Keten__AuditRecord *rec, json_t *o)
{
    if (rec->msg_id.len != KETEN_MSG_ID_BYTES) {
        return false;
    }
    for (size_t i = 0; i < p->n_sent; i++) {
        const sent_env *se = &p->sent[i];
        if (memcmp(se->msg_id, rec->msg_id.data, KETEN_MSG_ID_BYTES) != 0) {
            continue;
        }
        Keten__Envelope *env = NULL;
        bool ok = KETEN_PB_UNPACK(
                      keten__envelope, se->env, se->len, KETEN_ENVELOPE_MAX, "envelope", &env)
                == KETEN_OK
            && keten_logproof_record_is_envelope(rec, se->env, se->len, env) == KETEN_OK;
        keten_err_clear();
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        json_object_set_new(o, "matches_envelope", json_boolean(ok));
        return ok;
    }
    return false;
}

/* An ack (or the proof of a DUPLICATE error): valid when the proof
 * verifies, the record is a "submitted" one of this node and, when this
 * peer sent the envelope, it is that envelope's record. */
static json_t *ack_json(peer *p, const Keten__LeafProof *lp)
{
    json_t *o = json_object();
    Keten__AuditRecord *rec = NULL;
    bool valid = check_proof(p, lp, o, &rec);
    if (rec != NULL) {
        json_object_set_new(
            o, "envelope_hash", hexval(rec->envelope_hash.data, rec->envelope_hash.len));
        bool mine = p->me != NULL && strcmp(rec->sender, p->signer != NULL ? p->signer->id : p->me->id) == 0;
        bool known = false;
        for (size_t i = 0; i < p->n_sent && rec->msg_id.len == KETEN_MSG_ID_BYTES; i++) {
            known = known || memcmp(p->sent[i].msg_id, rec->msg_id.data, KETEN_MSG_ID_BYTES) == 0;
        }
        valid = valid && rec->event == KETEN__EVENT__EVENT_SUBMITTED && mine
            && (!known || record_is_sent(p, rec, o));
    }
    json_object_set_new(o, "valid", json_boolean(valid));
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    return o;
}

/* Sign and send the pending receipt leaves as one batch. */
static keten_err send_receipts(peer *p)
{
    if (p->n_pending == 0) {
        return KETEN_OK;
    }
    const Keten__NodeCert *mine = keten_directory_find_id(p->dir, p->me->id);
    if (mine == NULL) {
        return keten_err_set(KETEN_ERR_UNKNOWN_NODE, "this node is not in the directory");
    }
    keten_receipt_batch *rb = NULL;
    keten_err e = keten_receipt_batch_new(p->me, keten_directory_network(p->dir), mine->serial,
        keten_now_ms(), p->pending, p->n_pending, &rb);
    if (e != KETEN_OK) {
        return e;
    }
    Keten__Frame f = KETEN__FRAME__INIT;
    f.body_case = KETEN__FRAME__BODY_RECEIPTS;
    f.receipts = &rb->msg;
    e = send_frame(p, &f);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("receipt_batch"));
    json_object_set_new(o, "leaves", json_integer((json_int_t)p->n_pending));
    json_object_set_new(o, "sent", json_boolean(e == KETEN_OK));
    emit(o);
    keten_receipt_batch_destroy(&rb);
    p->n_pending = 0;
    p->batches++;
    return e;
}

static void on_deliver(peer *p, const Keten__Deliver *d, const recv_opts *ro)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("deliver"));
    Keten__AuditRecord *rec = NULL;
    bool proof_ok = check_proof(p, d->proof, o, &rec);
    keten_envelope_verified *v = NULL;
    Keten__Signal *sig = NULL;
    keten_err e = p->me == NULL ? KETEN_ERR_INVALID
                                : keten_envelope_open(p->me, p->dir, d->envelope.data,
                                    d->envelope.len, keten_now_ms(), &v, &sig);
    json_object_set_new(o, "opened", json_boolean(e == KETEN_OK));
    if (proof_ok) {
        Keten__Envelope *env = NULL;
        bool for_me = false;
        for (size_t i = 0; p->me != NULL && i < rec->n_recipients; i++) {
            for_me = for_me || strcmp(rec->recipients[i], p->me->id) == 0;
        }
        proof_ok = for_me
            && KETEN_PB_UNPACK(keten__envelope, d->envelope.data, d->envelope.len,
                   KETEN_ENVELOPE_MAX, "envelope", &env)
                == KETEN_OK
            && keten_logproof_record_is_envelope(rec, d->envelope.data, d->envelope.len, env)
                == KETEN_OK;
        keten_err_clear();
        keten_pb_free((ProtobufCMessage **)(void *)&env);
        json_object_set_new(o, "record_matches", json_boolean(proof_ok));
    }
    json_object_set_new(o, "valid", json_boolean(proof_ok));
    if (e == KETEN_OK) {
        json_object_set_new(o, "msg_id", hexval(v->header->msg_id.data, KETEN_MSG_ID_BYTES));
        json_object_set_new(o, "from", json_string(v->header->sender));
        json_object_set_new(o, "kind", json_string(keten_policy_kind_name(v->header->kind)));
        json_object_set_new(o, "category", json_string(v->header->category));
        json_object_set_new(o, "summary", json_string(sig->summary));
    } else {
        json_object_set_new(o, "error", json_string(keten_err_str(e)));
        json_object_set_new(o, "detail", json_string(keten_err_detail()));
    }
    /* A delivery whose proof does not hold gets no leaf (as a node does). */
    if (ro->receipt && proof_ok && p->n_pending < KETEN_RECEIPT_BATCH_MAX
        && d->envelope.len > 0 && rec->msg_id.len == KETEN_MSG_ID_BYTES) {
        keten_receipt_item *it = &p->pending[p->n_pending++];
        memcpy(it->msg_id, rec->msg_id.data, KETEN_MSG_ID_BYTES);
        crypto_hash_sha256(it->envelope_hash, d->envelope.data, d->envelope.len);
        if (e != KETEN_OK) {
            it->outcome = KETEN__OUTCOME__OUTCOME_REFUSED;
            it->reason = KETEN__REASON__REASON_UNDECRYPTABLE;
        } else if (p->refuse != KETEN__REASON__REASON_NONE) {
            it->outcome = KETEN__OUTCOME__OUTCOME_REFUSED;
            it->reason = p->refuse;
        } else {
            it->outcome = KETEN__OUTCOME__OUTCOME_STORED;
            it->reason = KETEN__REASON__REASON_NONE;
        }
        json_object_set_new(o, "outcome",
            json_string(enum_name(&keten__outcome__descriptor, it->outcome, "OUTCOME_")));
        json_object_set_new(o, "receipted", json_true());
    }
    p->deliveries++;
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    keten_signal_json_free(&sig);
    keten_envelope_verified_destroy(&v);
    emit(o);
}

/* A ReceiptNotice: the proof of a "receipted" or "refused-by-recipient"
 * record of a message this node sent, whose receipt the recipient signed. */
static void on_receipt(peer *p, const Keten__ReceiptNotice *rn)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("receipt"));
    Keten__AuditRecord *rec = NULL;
    bool valid = check_proof(p, rn->proof, o, &rec);
    if (rec != NULL) {
        bool answer = rec->event == KETEN__EVENT__EVENT_RECEIPTED
            || rec->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
        json_object_set_new(o, "recipient", json_string(rec->node));
        json_object_set_new(
            o, "reason", json_string(enum_name(&keten__reason__descriptor, rec->reason, "REASON_")));
        const Keten__NodeCert *cert = keten_directory_find_id(p->dir, rec->node);
        Keten__ReceiptBatchHead *head = NULL;
        Keten__ReceiptLeaf *leaf = NULL;
        bool receipt_ok = answer && cert != NULL && rec->receipt != NULL
            && keten_receipt_proof_verify(
                   cert, keten_directory_network(p->dir), rec->receipt, &head, &leaf)
                == KETEN_OK;
        keten_err_clear();
        if (receipt_ok) {
            bool stored = leaf->outcome == KETEN__OUTCOME__OUTCOME_STORED;
            json_object_set_new(o, "outcome",
                json_string(enum_name(&keten__outcome__descriptor, leaf->outcome, "OUTCOME_")));
            receipt_ok = stored == (rec->event == KETEN__EVENT__EVENT_RECEIPTED)
                && leaf->msg_id.len == rec->msg_id.len
                && memcmp(leaf->msg_id.data, rec->msg_id.data, rec->msg_id.len) == 0
                && (stored || leaf->reason == rec->reason);
        }
        json_object_set_new(o, "receipt_valid", json_boolean(receipt_ok));
        bool mine = p->me != NULL && strcmp(rec->sender, p->me->id) == 0;
        valid = valid && receipt_ok && mine;
        keten_pb_free((ProtobufCMessage **)(void *)&leaf);
        keten_pb_free((ProtobufCMessage **)(void *)&head);
    }
    json_object_set_new(o, "valid", json_boolean(valid));
    if (valid) {
        confirm_notice(p, o, rn->proof->leaf_index);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    p->receipts++;
    emit(o);
}

static void on_expired(peer *p, const Keten__ExpiredNotice *en)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("expired"));
    Keten__AuditRecord *rec = NULL;
    bool valid = check_proof(p, en->proof, o, &rec);
    if (rec != NULL) {
        json_t *r = json_array();
        for (size_t i = 0; i < rec->n_recipients; i++) {
            json_array_append_new(r, json_string(rec->recipients[i]));
        }
        json_object_set_new(o, "recipients", r);
        valid = valid && rec->event == KETEN__EVENT__EVENT_EXPIRED && p->me != NULL
            && strcmp(rec->sender, p->me->id) == 0;
    }
    json_object_set_new(o, "valid", json_boolean(valid));
    if (valid) {
        confirm_notice(p, o, en->proof->leaf_index);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&rec);
    emit(o);
}

static void on_checkpoint(peer *p, const Keten__CheckpointFrame *cf)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("checkpoint"));
    keten_checkpoint cp;
    size_t len = strlen(cf->note);
    keten_err e = keten_checkpoint_open(
        cf->note, len, p->broker_cert->id, p->broker_cert->log_pk.data, &cp);
    json_object_set_new(o, "signature_valid", json_boolean(e == KETEN_OK));
    json_object_set_new(o, "old_size", json_integer((json_int_t)cf->old_size));
    json_object_set_new(o, "witness", json_boolean(cf->witness));
    bool consistent = false;
    if (e == KETEN_OK) {
        json_object_set_new(o, "size", json_integer((json_int_t)cp.size));
        json_object_set_new(o, "directory_version", json_integer((json_int_t)cp.dir_version));
        json_object_set_new(o, "proof_hashes", json_integer((json_int_t)cf->n_consistency));
        keten_hash old_root;
        keten_hash path[KETEN_MERKLE_MAX_PROOF];
        bool sizes = cf->n_consistency <= KETEN_MERKLE_MAX_PROOF;
        for (size_t i = 0; sizes && i < cf->n_consistency; i++) {
            sizes = cf->consistency[i].len == KETEN_HASH_BYTES;
            if (sizes) {
                memcpy(path[i], cf->consistency[i].data, KETEN_HASH_BYTES);
            }
        }
        if (cf->old_size == 0) {
            consistent = p->n_kept == 0 && cf->n_consistency == 0;
        } else if (sizes && kept_root(p, cf->old_size, old_root)) {
            consistent = keten_merkle_verify_consistency(cf->old_size, cp.size, old_root, cp.root,
                             (const keten_hash *)path, cf->n_consistency)
                == KETEN_OK;
            keten_err_clear();
        }
        consistent = consistent && (!p->have_latest || cp.size >= p->latest.size);
        json_object_set_new(o, "consistent", json_boolean(consistent));
        size_t count = 0;
        bool witnessed = false;
        if (keten_checkpoint_witnesses(cf->note, len, p->dir, &count, &witnessed) == KETEN_OK) {
            json_object_set_new(o, "cosignatures", json_integer((json_int_t)count));
            json_object_set_new(o, "witnessed", json_boolean(witnessed));
        }
        if (consistent) {
            if (!p->have_first) {
                p->first = cp;
                p->have_first = true;
            }
            p->latest = cp;
            p->have_latest = true;
            keep(p, &cp);
        }
        if (consistent && cf->witness && p->cosign && p->me != NULL) {
            char *line = NULL;
            if (keten_checkpoint_cosignature_sign(
                    cf->note, len, p->me->id, p->me->sign_sk, keten_now_ms() / 1000, &line)
                == KETEN_OK) {
                Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
                cs.node = p->me->id;
                cs.line = line;
                cs.tree_size = cp.size;
                Keten__Frame f = KETEN__FRAME__INIT;
                f.body_case = KETEN__FRAME__BODY_COSIGNATURE;
                f.cosignature = &cs;
                json_object_set_new(o, "cosigned", json_boolean(send_frame(p, &f) == KETEN_OK));
                free(line);
            }
        }
    } else {
        json_object_set_new(o, "error", json_string(keten_err_detail()));
    }
    json_object_set_new(o, "valid", json_boolean(e == KETEN_OK && consistent));
    emit(o);
}

static void on_error(peer *p, const Keten__Frame *f)
{
    const Keten__Error *er = f->error;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("error"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)f->request_id));
    json_object_set_new(
        o, "reason", json_string(enum_name(&keten__reason__descriptor, er->reason, "REASON_")));
    if (er->msg_id.len > 0) {
        json_object_set_new(o, "msg_id", hexval(er->msg_id.data, er->msg_id.len));
    }
    json_object_set_new(o, "rule", json_integer(er->rule));
    json_object_set_new(o, "detail", json_string(er->detail));
    if (er->directory_version > 0) {
        json_object_set_new(
            o, "directory_version", json_integer((json_int_t)er->directory_version));
        if (er->msg_id.len == 0) {
            p->refusals++;
        }
    }
    if (er->proof != NULL) {
        json_object_set_new(o, "ack", ack_json(p, er->proof));
    }
    p->answers++;
    emit(o);
}

/* Proof bookkeeping for the `proof` action. */
typedef struct proof_state {
    bool active, asked, done;
    bool next; /* --leaf next: walk on past records the broker does not serve this node */
    uint64_t leaf;
    uint64_t req;
    keten_checkpoint at; /* the checkpoint the proof is against */
} proof_state;

static void maybe_ask_proof(peer *p, proof_state *ps)
{
    if (ps->active && ps->leaf == UINT64_MAX && p->have_first) {
        /* --leaf next: the first leaf appended after the first checkpoint
         * this connection was sent. */
        ps->leaf = p->first.size;
    }
    if (!ps->active || ps->asked || !p->have_latest || p->latest.size <= ps->leaf) {
        return;
    }
    ps->at = p->latest;
    Keten__ProofRequest pr = KETEN__PROOF_REQUEST__INIT;
    uint64_t leaves[1] = { ps->leaf };
    pr.tree_size = ps->at.size;
    pr.old_size = p->first.size < ps->at.size ? p->first.size : 0;
    pr.n_leaf_indexes = 1;
    pr.leaf_indexes = leaves;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = ps->req = ++p->next_request;
    f.body_case = KETEN__FRAME__BODY_PROOF_REQUEST;
    f.proof_request = &pr;
    ps->asked = send_frame(p, &f) == KETEN_OK;
}

static void on_proof(peer *p, const Keten__ProofResponse *r, proof_state *ps)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("proof"));
    json_object_set_new(o, "tree_size", json_integer((json_int_t)r->tree_size));
    json_object_set_new(o, "old_size", json_integer((json_int_t)r->old_size));
    bool incl_ok = false, cons_ok = false;
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    if (r->n_inclusions == 1 && r->inclusions[0]->n_path <= KETEN_MERKLE_MAX_PROOF) {
        const Keten__InclusionProof *ip = r->inclusions[0];
        keten_hash lh;
        keten_merkle_leaf_hash(ip->leaf.data, ip->leaf.len, lh);
        bool sizes = true;
        for (size_t i = 0; i < ip->n_path; i++) {
            sizes = sizes && ip->path[i].len == KETEN_HASH_BYTES;
            if (sizes) {
                memcpy(path[i], ip->path[i].data, KETEN_HASH_BYTES);
            }
        }
        incl_ok = sizes && ip->leaf_index == ps->leaf
            && keten_merkle_verify_inclusion(lh, ip->leaf_index, ps->at.size,
                   (const keten_hash *)path, ip->n_path, ps->at.root)
                == KETEN_OK;
        Keten__AuditRecord *rec = NULL;
        if (KETEN_PB_UNPACK(keten__audit_record, ip->leaf.data, ip->leaf.len, KETEN_MERKLE_LEAF_MAX,
                "leaf", &rec)
            == KETEN_OK) {
            json_object_set_new(o, "leaf_event",
                json_string(enum_name(&keten__event__descriptor, rec->event, "EVENT_")));
            json_object_set_new(o, "leaf_seq", json_integer((json_int_t)rec->seq));
            if (rec->msg_id.len > 0) {
                json_object_set_new(o, "leaf_msg_id", hexval(rec->msg_id.data, rec->msg_id.len));
            }
            keten_pb_free((ProtobufCMessage **)(void *)&rec);
        }
    }
    json_object_set_new(o, "inclusion_valid", json_boolean(incl_ok));
    if (r->old_size > 0 && r->n_consistency <= KETEN_MERKLE_MAX_PROOF) {
        bool sizes = true;
        for (size_t i = 0; i < r->n_consistency; i++) {
            sizes = sizes && r->consistency[i].len == KETEN_HASH_BYTES;
            if (sizes) {
                memcpy(path[i], r->consistency[i].data, KETEN_HASH_BYTES);
            }
        }
        cons_ok = sizes && r->old_size == p->first.size
            && keten_merkle_verify_consistency(r->old_size, ps->at.size, p->first.root, ps->at.root,
                   (const keten_hash *)path, r->n_consistency)
                == KETEN_OK;
        json_object_set_new(o, "consistency_valid", json_boolean(cons_ok));
    }
    ps->done = true;
    emit(o);
}

/* Handle one frame; returns false if it did not parse. */
static bool handle(peer *p, const uint8_t *data, size_t len, const recv_opts *ro, proof_state *ps)
{
    Keten__Frame *f = NULL;
    if (KETEN_PB_UNPACK(keten__frame, data, len, KETEN_FRAME_MAX, "frame", &f) != KETEN_OK) {
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("garbage"));
        json_object_set_new(o, "bytes", json_integer((json_int_t)len));
        emit(o);
        return false;
    }
    p->frames++;
    json_t *o = NULL;
    switch (f->body_case) {
    case KETEN__FRAME__BODY_SUBMIT_ACK:
        o = ack_json(p, f->submit_ack->proof);
        json_object_set_new(o, "event", json_string("ack"));
        json_object_set_new(o, "request_id", json_integer((json_int_t)f->request_id));
        p->answers++;
        emit(o);
        break;
    case KETEN__FRAME__BODY_ERROR:
        on_error(p, f);
        if (ps != NULL && ps->active && ps->asked && f->request_id == ps->req) {
            if (ps->next && f->error->reason == KETEN__REASON__REASON_SENDER_MISMATCH) {
                /* --leaf next: a record of others' traffic; the one after */
                ps->leaf++;
                ps->asked = false;
                maybe_ask_proof(p, ps);
            } else {
                ps->done = true; /* the proof request was refused */
            }
        }
        break;
    case KETEN__FRAME__BODY_DELIVER:
        on_deliver(p, f->deliver, ro);
        break;
    case KETEN__FRAME__BODY_RECEIPT_NOTICE:
        on_receipt(p, f->receipt_notice);
        break;
    case KETEN__FRAME__BODY_EXPIRED:
        on_expired(p, f->expired);
        break;
    case KETEN__FRAME__BODY_CHECKPOINT:
        on_checkpoint(p, f->checkpoint);
        maybe_ask_proof(p, ps);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_PUSH: {
        o = json_object();
        json_object_set_new(o, "event", json_string("directory_push"));
        json_object_set_new(o, "request_id", json_integer((json_int_t)f->request_id));
        json_t *v = json_array();
        for (size_t i = 0; i < f->directory_push->n_chain; i++) {
            Keten__SignedDirectory *sd = NULL;
            Keten__Directory *d = NULL;
            const ProtobufCBinaryData *c = &f->directory_push->chain[i];
            if (KETEN_PB_UNPACK(
                    keten__signed_directory, c->data, c->len, KETEN_DIRECTORY_MAX, "directory", &sd)
                    == KETEN_OK
                && KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
                       KETEN_DIRECTORY_MAX, "directory", &d)
                    == KETEN_OK) {
                json_array_append_new(v, json_integer((json_int_t)d->version));
            }
            keten_pb_free((ProtobufCMessage **)(void *)&d);
            keten_pb_free((ProtobufCMessage **)(void *)&sd);
        }
        json_object_set_new(o, "versions", v);
        p->answers++;
        p->pushes++;
        emit(o);
        break;
    }
    case KETEN__FRAME__BODY_PROOF_RESPONSE:
        on_proof(p, f->proof_response, ps);
        break;
    default:
        o = json_object();
        json_object_set_new(o, "event", json_string("frame"));
        json_object_set_new(o, "body", json_integer(f->body_case));
        emit(o);
        break;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&f);
    return true;
}

typedef bool (*done_fn)(const peer *p, const void *arg);

/* Receive and handle frames until done() or the deadline. */
static bool pump(
    peer *p, uint64_t deadline, done_fn done, const void *arg, const recv_opts *ro, proof_state *ps)
{
    while (done == NULL || !done(p, arg)) {
        uint64_t now = keten_mono_ms();
        if (now >= deadline) {
            return false;
        }
        zmq_pollitem_t it = { p->sock, 0, ZMQ_POLLIN, 0 };
        if (p->n_pending > 0 && zmq_poll(&it, 1, 0) == 0) {
            /* Nothing more to read now: answer what was read, in one batch. */
            (void)send_receipts(p);
        }
        int rc = zmq_poll(&it, 1, (long)(deadline - now));
        if (rc <= 0) {
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->sock, ZMQ_DONTWAIT) >= 0) {
            handle(p, zmq_msg_data(&m), zmq_msg_size(&m), ro, ps);
        }
        zmq_msg_close(&m);
    }
    return true;
}

/* Handle whatever has already arrived, without waiting (a peer that does
 * not read while it sends would make the broker drop frames at its send
 * high-water mark). */
static void drain(peer *p, const recv_opts *ro, proof_state *ps)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        handle(p, zmq_msg_data(&m), zmq_msg_size(&m), ro, ps);
        zmq_msg_close(&m);
    }
}

static void timeout_event(const char *waiting)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("timeout"));
    json_object_set_new(o, "waiting_for", json_string(waiting));
    emit(o);
}

/* ---- sealing ----------------------------------------------------------- */

typedef struct seal_opts {
    const char *to, *json_path, *kind, *save, *out;
    uint64_t count;
    int64_t created_offset;
    uint64_t expires_in;
    uint64_t wait_receipts;
} seal_opts;

static keten_err seal_one(peer *p, const seal_opts *so, uint8_t **env, size_t *len,
    uint8_t msg_id[static KETEN_MSG_ID_BYTES])
{
    uint8_t *json = NULL, *payload = NULL;
    size_t json_len = 0, payload_len = 0;
    Keten__Signal *sig = NULL;
    char **to = NULL;
    size_t n_to = 0;
    Keten__Kind kind = KETEN__KIND__KIND_SIGNAL;
    keten_err e;
    if (so->kind != NULL && (e = keten_policy_kind_parse(so->kind, &kind)) != KETEN_OK) {
        return e;
    }
    if ((e = keten_file_read(so->json_path, KETEN_SIGNAL_JSON_MAX, &json, &json_len)) != KETEN_OK
        || (e = keten_signal_json_parse((const char *)json, json_len, &sig)) != KETEN_OK
        || (e = keten_signal_json_pack(sig, &payload, &payload_len)) != KETEN_OK
        || (e = keten_cli_split(so->to, "--to", &to, &n_to)) != KETEN_OK) {
        goto out;
    }
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params sp = {
        .kind = kind,
        .category = sig->type,
        .purpose = sig->purpose,
        .created_at = (uint64_t)((int64_t)now + so->created_offset),
    };
    sp.expires_at = sp.created_at + so->expires_in;
    const keten_identity *signer = p->signer != NULL ? p->signer : p->me;
    e = keten_envelope_seal(
        signer, p->dir, (const char *const *)to, n_to, &sp, payload, payload_len, msg_id, env, len);
out:
    keten_cli_split_free(&to, n_to);
    keten_signal_json_free(&sig);
    free(payload);
    free(json);
    return e;
}

static void sent_event(const uint8_t msg_id[static KETEN_MSG_ID_BYTES], uint64_t rid, size_t len)
{
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("sent"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)rid));
    json_object_set_new(o, "msg_id", hexval(msg_id, KETEN_MSG_ID_BYTES));
    json_object_set_new(o, "bytes", json_integer((json_int_t)len));
    emit(o);
}

static bool answers_done(const peer *p, const void *arg)
{
    const size_t *want = arg;
    return p->answers >= want[0] && p->receipts >= want[1];
}

static int act_submit(peer *p, const seal_opts *so)
{
    recv_opts ro = { false };
    proof_state ps = { 0 };
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    for (uint64_t i = 0; i < so->count; i++) {
        uint8_t *env = NULL, msg_id[KETEN_MSG_ID_BYTES];
        size_t len = 0;
        uint64_t rid = 0;
        if ((e = seal_one(p, so, &env, &len, msg_id)) != KETEN_OK) {
            return fail(e, "seal");
        }
        if (so->save != NULL) {
            (void)remove(so->save);
            e = keten_file_write(so->save, env, len, 0644, false);
        }
        if (e == KETEN_OK) {
            e = send_submit(p, env, len, &rid);
        }
        if (e == KETEN_OK && p->n_sent < PEER_SENT_MAX) {
            sent_env *se = &p->sent[p->n_sent++];
            memcpy(se->msg_id, msg_id, KETEN_MSG_ID_BYTES);
            se->env = env;
            se->len = len;
            env = NULL;
        }
        free(env);
        if (e != KETEN_OK) {
            return fail(e, "submit");
        }
        sent_event(msg_id, rid, len);
        drain(p, &ro, &ps);
    }
    size_t want[2] = { so->count, so->wait_receipts };
    if (!pump(p, keten_mono_ms() + p->timeout_ms, answers_done, want, &ro, &ps)) {
        timeout_event(p->answers < so->count ? "answers" : "receipts");
    }
    return 0;
}

static int act_seal(peer *p, const seal_opts *so)
{
    uint8_t *env = NULL, msg_id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    keten_err e = seal_one(p, so, &env, &len, msg_id);
    if (e != KETEN_OK) {
        return fail(e, "seal");
    }
    (void)remove(so->out);
    e = keten_file_write(so->out, env, len, 0644, false);
    free(env);
    if (e != KETEN_OK) {
        return fail(e, "write");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("sealed"));
    json_object_set_new(o, "msg_id", hexval(msg_id, KETEN_MSG_ID_BYTES));
    json_object_set_new(o, "bytes", json_integer((json_int_t)len));
    emit(o);
    return 0;
}

static int act_raw(peer *p, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_file_read(path, KETEN_FRAME_MAX - 1024, &buf, &len);
    if (e != KETEN_OK) {
        return fail(e, "read");
    }
    if ((e = peer_connect(p)) != KETEN_OK) {
        free(buf);
        return fail(e, "connect");
    }
    uint64_t rid = 0;
    e = send_submit(p, buf, len, &rid);
    free(buf);
    if (e != KETEN_OK) {
        return fail(e, "submit");
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("sent"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)rid));
    json_object_set_new(o, "bytes", json_integer((json_int_t)len));
    emit(o);
    size_t want[2] = { 1, 0 };
    recv_opts ro = { false };
    proof_state ps = { 0 };
    if (!pump(p, keten_mono_ms() + p->timeout_ms, answers_done, want, &ro, &ps)) {
        timeout_event("answers");
    }
    return 0;
}

static bool refusals_done(const peer *p, const void *arg)
{
    return p->refusals >= *(const size_t *)arg;
}

static int act_connect_only(peer *p, uint64_t listen_ms, uint64_t pokes)
{
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    if ((e = send_credit(p, 0)) != KETEN_OK) {
        return fail(e, "credit");
    }
    recv_opts ro = { false };
    proof_state ps = { 0 };
    uint64_t deadline = keten_mono_ms() + listen_ms;
    size_t want = 1;
    if (pokes > 0 && pump(p, deadline, refusals_done, &want, &ro, &ps)) {
        for (uint64_t i = 0; i < pokes; i++) {
            Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
            Keten__Frame f = KETEN__FRAME__INIT;
            f.request_id = ++p->next_request;
            f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
            f.directory_request = &dr;
            if ((e = send_frame(p, &f)) != KETEN_OK) {
                return fail(e, "directory request after the refusal");
            }
        }
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("poked"));
        json_object_set_new(o, "requests", json_integer((json_int_t)pokes));
        emit(o);
        want = 1 + (size_t)pokes;
        (void)pump(p, deadline, refusals_done, &want, &ro, &ps);
    } else {
        pump(p, deadline, NULL, NULL, &ro, &ps);
    }
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("summary"));
    json_object_set_new(o, "frames", json_integer((json_int_t)p->frames));
    emit(o);
    return 0;
}

static bool deliveries_done(const peer *p, const void *arg)
{
    return p->deliveries >= *(const uint64_t *)arg;
}

static bool pushes_done(const peer *p, const void *arg)
{
    return p->pushes >= *(const size_t *)arg;
}

static int act_recv(peer *p, uint64_t count, uint64_t credit, bool receipt, uint64_t rehello)
{
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    if ((e = send_credit(p, p->credit_first > 0 ? 0 : (uint32_t)credit)) != KETEN_OK) {
        return fail(e, "credit");
    }
    recv_opts ro = { receipt };
    proof_state ps = { 0 };
    if (!pump(p, keten_mono_ms() + p->timeout_ms, deliveries_done, &count, &ro, &ps)) {
        timeout_event("deliveries");
    }
    if (rehello > 0) {
        /* The same connection says Hello again and again, granting credit
         * each time; each time a directory request, answered after the
         * broker's batch that read them, puts the next in a batch of its
         * own. */
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("rehello"));
        json_object_set_new(o, "hellos", json_integer((json_int_t)rehello));
        json_object_set_new(o, "deliveries_before", json_integer((json_int_t)p->deliveries));
        emit(o);
        for (uint64_t i = 0; i < rehello; i++) {
            Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
            Keten__Frame f = KETEN__FRAME__INIT;
            f.request_id = ++p->next_request;
            f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
            f.directory_request = &dr;
            if ((e = send_hello(p, p->have_latest ? p->latest.size : p->hello_size)) != KETEN_OK
                || (e = send_credit(p, (uint32_t)credit)) != KETEN_OK
                || (e = send_frame(p, &f)) != KETEN_OK) {
                return fail(e, "Hello again");
            }
            size_t want = p->pushes + 1;
            if (!pump(p, keten_mono_ms() + p->timeout_ms, pushes_done, &want, &ro, &ps)) {
                timeout_event("the directory request after a Hello");
                break;
            }
        }
    }
    /* Let the receipts go out and catch refusals of them. */
    (void)send_receipts(p);
    pump(p, keten_mono_ms() + PEER_GRACE_MS, NULL, NULL, &ro, &ps);
    (void)send_receipts(p);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("summary"));
    json_object_set_new(o, "deliveries", json_integer((json_int_t)p->deliveries));
    json_object_set_new(o, "receipt_batches", json_integer((json_int_t)p->batches));
    json_object_set_new(o, "frames", json_integer((json_int_t)p->frames));
    emit(o);
    return 0;
}

/* One receipt batch naming the envelope in path (see the top comment). */
static int act_receipt_batch(
    peer *p, const char *path, const char *tamper, uint64_t repeat, uint64_t listen_ms)
{
    uint8_t *env = NULL;
    size_t len = 0;
    Keten__Envelope *e_msg = NULL;
    Keten__Header *h = NULL;
    keten_receipt_batch *rb = NULL;
    uint8_t *signed_buf = NULL;
    keten_receipt_item *items = NULL;
    Keten__ReceiptLeaf **sent_leaves = NULL;
    int r = 1;
    keten_err e = keten_file_read(path, KETEN_ENVELOPE_MAX, &env, &len);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__envelope, env, len, KETEN_ENVELOPE_MAX, "envelope", &e_msg);
    }
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__header, e_msg->header.data, e_msg->header.len,
            KETEN_ENVELOPE_MAX, "header", &h);
    }
    if (e == KETEN_OK && h->msg_id.len != KETEN_MSG_ID_BYTES) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "%s: a msg_id of %zu bytes", path, h->msg_id.len);
    }
    const Keten__NodeCert *mine = keten_directory_find_id(p->dir, p->me->id);
    if (e == KETEN_OK && mine == NULL) {
        e = keten_err_set(KETEN_ERR_UNKNOWN_NODE, "this node is not in the directory");
    }
    if (e != KETEN_OK) {
        r = fail(e, "envelope");
        goto out;
    }
    keten_receipt_item item;
    memset(&item, 0, sizeof item);
    memcpy(item.msg_id, h->msg_id.data, KETEN_MSG_ID_BYTES);
    crypto_hash_sha256(item.envelope_hash, env, len);
    item.outcome = p->refuse != KETEN__REASON__REASON_NONE ? KETEN__OUTCOME__OUTCOME_REFUSED
                                                           : KETEN__OUTCOME__OUTCOME_STORED;
    item.reason = p->refuse;
    items = malloc(repeat * sizeof *items);
    if (items == NULL) {
        r = fail(KETEN_ERR_NOMEM, "receipt batch");
        goto out;
    }
    for (uint64_t i = 0; i < repeat; i++) {
        items[i] = item;
    }
    if ((e = keten_receipt_batch_new(p->me, keten_directory_network(p->dir), mine->serial,
             keten_now_ms(), items, repeat, &rb))
        != KETEN_OK) {
        r = fail(e, "receipt batch");
        goto out;
    }
    Keten__ReceiptBatch msg = rb->msg;
    uint8_t sig[KETEN_SIG_BYTES];
    if (p->signer != NULL) {
        /* The same head, signed with another node's key. */
        size_t label = strlen(KETEN_LABEL_RECEIPTS);
        signed_buf = malloc(label + rb->head_len);
        if (signed_buf == NULL) {
            r = fail(KETEN_ERR_NOMEM, "receipt batch");
            goto out;
        }
        memcpy(signed_buf, KETEN_LABEL_RECEIPTS, label);
        memcpy(signed_buf + label, rb->head, rb->head_len);
        crypto_sign_detached(sig, NULL, signed_buf, label + rb->head_len, p->signer->sign_sk);
        msg.signature.data = sig;
        msg.signature.len = sizeof sig;
    }
    Keten__ReceiptLeaf changed;
    Keten__ReceiptLeaf *changed_p[1] = { &changed };
    uint8_t other_hash[KETEN_HASH_BYTES];
    if (tamper != NULL && strcmp(tamper, "leaf") == 0) {
        /* A valid leaf, but not the one the signed root is over. */
        changed = *rb->leaf_ptrs[0];
        memcpy(other_hash, item.envelope_hash, sizeof other_hash);
        other_hash[0] ^= 0x01;
        changed.envelope_hash.data = other_hash;
        msg.leaves = changed_p;
    } else if (tamper != NULL && strcmp(tamper, "empty") == 0) {
        msg.n_leaves = 0;
        msg.leaves = NULL;
    } else if (tamper != NULL && (strcmp(tamper, "count") == 0 || strcmp(tamper, "many") == 0)) {
        /* The signed leaves, then copies of the first: one more than the
         * head counts, or KETEN_RECEIPT_BATCH_MAX + 1 in all. */
        size_t n = strcmp(tamper, "count") == 0 ? rb->n + 1 : KETEN_RECEIPT_BATCH_MAX + 1;
        sent_leaves = calloc(n, sizeof *sent_leaves);
        if (sent_leaves == NULL || n <= rb->n) {
            r = fail(KETEN_ERR_NOMEM, "receipt batch");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            sent_leaves[i] = rb->leaf_ptrs[i < rb->n ? i : 0];
        }
        msg.n_leaves = n;
        msg.leaves = sent_leaves;
    } else if (tamper != NULL) {
        r = fail(
            keten_err_set(KETEN_ERR_INVALID, "--tamper %s: leaf, count, empty or many", tamper),
            "options");
        goto out;
    }
    if ((e = peer_connect(p)) != KETEN_OK) {
        r = fail(e, "connect");
        goto out;
    }
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = ++p->next_request;
    f.body_case = KETEN__FRAME__BODY_RECEIPTS;
    f.receipts = &msg;
    e = send_frame(p, &f);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("receipt_batch"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)f.request_id));
    json_object_set_new(o, "msg_id", hexval(item.msg_id, KETEN_MSG_ID_BYTES));
    json_object_set_new(o, "leaves", json_integer((json_int_t)msg.n_leaves));
    json_object_set_new(o, "sent", json_boolean(e == KETEN_OK));
    emit(o);
    recv_opts ro = { false };
    proof_state ps = { 0 };
    pump(p, keten_mono_ms() + listen_ms, NULL, NULL, &ro, &ps);
    o = json_object();
    json_object_set_new(o, "event", json_string("summary"));
    json_object_set_new(o, "frames", json_integer((json_int_t)p->frames));
    emit(o);
    r = 0;
out:
    free(sent_leaves);
    free(items);
    free(signed_buf);
    keten_receipt_batch_destroy(&rb);
    keten_pb_free((ProtobufCMessage **)(void *)&h);
    keten_pb_free((ProtobufCMessage **)(void *)&e_msg);
    free(env);
    return r;
}

/* A reason by its name without the prefix ("policy"). */
static bool reason_parse(const char *name, Keten__Reason *out)
{
    char full[64];
    int n = snprintf(full, sizeof full, "REASON_%s", name);
    if (n < 0 || (size_t)n >= sizeof full) {
        return false;
    }
    for (char *c = full; *c != '\0'; c++) {
        *c = (*c >= 'a' && *c <= 'z') ? (char)(*c - 'a' + 'A') : (*c == '-' ? '_' : *c);
    }
    const ProtobufCEnumValue *v
        = protobuf_c_enum_descriptor_get_value_by_name(&keten__reason__descriptor, full);
    if (v == NULL || v->value == KETEN__REASON__REASON_NONE) {
        return false;
    }
    *out = (Keten__Reason)v->value;
    return true;
}

static bool proof_done(const peer *p, const void *arg)
{
    (void)p;
    return ((const proof_state *)arg)->done;
}

static int act_proof(peer *p, uint64_t leaf)
{
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    if ((e = send_credit(p, 0)) != KETEN_OK) {
        return fail(e, "credit");
    }
    recv_opts ro = { false };
    proof_state ps = { .active = true, .next = leaf == UINT64_MAX, .leaf = leaf };
    if (!pump(p, keten_mono_ms() + p->timeout_ms, proof_done, &ps, &ro, &ps)) {
        timeout_event(ps.asked ? "proof" : "a checkpoint covering the leaf");
    }
    return 0;
}

/* Ask for the directory versions after `after` on p's connection and wait
 * for the answer. */
static int dir_request(peer *p, uint64_t after)
{
    keten_err e;
    Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
    dr.after_version = after;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = ++p->next_request;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    f.directory_request = &dr;
    if ((e = send_frame(p, &f)) != KETEN_OK) {
        return fail(e, "directory request");
    }
    size_t want[2] = { 1, 0 };
    recv_opts ro = { false };
    proof_state ps = { 0 };
    if (!pump(p, keten_mono_ms() + p->timeout_ms, answers_done, want, &ro, &ps)) {
        timeout_event("directory push");
    }
    return 0;
}

static int act_dir_request(peer *p, uint64_t after)
{
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    return dir_request(p, after);
}

static int act_notice_ack(peer *p, uint64_t leaf)
{
    keten_err e = peer_connect(p);
    if (e != KETEN_OK) {
        return fail(e, "connect");
    }
    e = send_notice_ack(p, leaf);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("notice_ack"));
    json_object_set_new(o, "leaf", json_integer((json_int_t)leaf));
    json_object_set_new(o, "sent", json_boolean(e == KETEN_OK));
    emit(o);
    if (e != KETEN_OK) {
        return fail(e, "notice ack");
    }
    return dir_request(p, 0); /* on the same connection */
}

/* ---- the broker's stored checkpoints ----------------------------------- */

static uint64_t be64(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* Open the broker store db read-only and a cursor on its `checkpoints`. */
static int checkpoints_open(const char *db, MDB_env **env, MDB_txn **txn, MDB_cursor **cur)
{
    MDB_dbi dbi;
    int rc;
    *env = NULL;
    *txn = NULL;
    *cur = NULL;
    if ((rc = mdb_env_create(env)) != 0 || (rc = mdb_env_set_maxdbs(*env, 16)) != 0
        || (rc = mdb_env_open(*env, db, MDB_RDONLY | MDB_NOTLS, 0600)) != 0
        || (rc = mdb_txn_begin(*env, NULL, MDB_RDONLY, txn)) != 0
        || (rc = mdb_dbi_open(*txn, "checkpoints", 0, &dbi)) != 0
        || (rc = mdb_cursor_open(*txn, dbi, cur)) != 0) {
        fprintf(stderr, "keten-testpeer: %s: %s\n", db, mdb_strerror(rc));
        if (*txn != NULL) {
            mdb_txn_abort(*txn);
        }
        mdb_env_close(*env);
        return 1;
    }
    return 0;
}

static void checkpoints_close(MDB_env *env, MDB_txn *txn, MDB_cursor *cur)
{
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static int act_checkpoints(const char *db)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (checkpoints_open(db, &env, &txn, &cur) != 0) {
        return 1;
    }
    static const char dash[] = "\xe2\x80\x94 "; /* U+2014 and a space */
    MDB_val k, v;
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        if (k.mv_size != 8) {
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("checkpoint_stored"));
        json_object_set_new(o, "size", json_integer((json_int_t)be64(k.mv_data)));
        json_t *names = json_array();
        const char *t = v.mv_data;
        size_t n = v.mv_size;
        /* Signature lines: those starting with the em dash, after the body. */
        for (size_t i = 0; i < n;) {
            size_t end = i;
            while (end < n && t[end] != '\n') {
                end++;
            }
            size_t dl = sizeof dash - 1;
            if (end - i > dl && memcmp(t + i, dash, dl) == 0) {
                size_t s0 = i + dl, s1 = s0;
                while (s1 < end && t[s1] != ' ') {
                    s1++;
                }
                json_array_append_new(names, json_stringn(t + s0, s1 - s0));
            }
            i = end + 1;
        }
        json_object_set_new(o, "signers", names);
        emit(o);
    }
    checkpoints_close(env, txn, cur);
    return 0;
}

static int act_cosign(peer *p, const char *db, uint64_t listen_ms)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (checkpoints_open(db, &env, &txn, &cur) != 0) {
        return 1;
    }
    MDB_val k, v;
    char *note = NULL, *line = NULL;
    uint64_t size = 0;
    keten_err e = KETEN_ERR_NOT_FOUND;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8
        && (note = malloc(v.mv_size + 1)) != NULL) {
        memcpy(note, v.mv_data, v.mv_size);
        note[v.mv_size] = '\0';
        size = be64(k.mv_data);
        e = KETEN_OK;
    }
    checkpoints_close(env, txn, cur);
    if (e != KETEN_OK) {
        free(note);
        return fail(keten_err_set(e, "%s holds no witness checkpoint", db), "cosign");
    }
    e = keten_checkpoint_cosignature_sign(
        note, strlen(note), p->me->id, p->me->sign_sk, keten_now_ms() / 1000, &line);
    free(note);
    if (e != KETEN_OK) {
        return fail(e, "cosign");
    }
    if ((e = peer_connect(p)) != KETEN_OK) {
        free(line);
        return fail(e, "connect");
    }
    Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
    cs.node = p->me->id;
    cs.line = line;
    cs.tree_size = size;
    Keten__Frame f = KETEN__FRAME__INIT;
    f.request_id = ++p->next_request;
    f.body_case = KETEN__FRAME__BODY_COSIGNATURE;
    f.cosignature = &cs;
    e = send_frame(p, &f);
    free(line);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("cosignature"));
    json_object_set_new(o, "request_id", json_integer((json_int_t)f.request_id));
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    json_object_set_new(o, "sent", json_boolean(e == KETEN_OK));
    emit(o);
    if (e != KETEN_OK) {
        return fail(e, "cosignature");
    }
    Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
    Keten__Frame d = KETEN__FRAME__INIT;
    d.request_id = ++p->next_request;
    d.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    d.directory_request = &dr;
    if ((e = send_frame(p, &d)) != KETEN_OK) {
        return fail(e, "directory request");
    }
    size_t want = 1;
    recv_opts ro = { false };
    proof_state ps = { 0 };
    if (!pump(p, keten_mono_ms() + listen_ms, pushes_done, &want, &ro, &ps)) {
        timeout_event("the directory request after the cosignature");
    }
    return 0;
}

/* ---- audit dump -------------------------------------------------------- */

static int act_audit(const char *db)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    int rc;
    if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_maxdbs(env, 16)) != 0
        || (rc = mdb_env_open(env, db, MDB_RDONLY | MDB_NOTLS, 0600)) != 0
        || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0
        || (rc = mdb_dbi_open(txn, "audit-leaf", 0, &dbi)) != 0
        || (rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        fprintf(stderr, "keten-testpeer: %s: %s\n", db, mdb_strerror(rc));
        if (txn != NULL) {
            mdb_txn_abort(txn);
        }
        mdb_env_close(env);
        return 1;
    }
    MDB_val k, v;
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        Keten__AuditRecord *r = NULL;
        if (KETEN_PB_UNPACK(
                keten__audit_record, v.mv_data, v.mv_size, KETEN_MERKLE_LEAF_MAX, "record", &r)
            != KETEN_OK) {
            printf("{\"event\":\"undecodable\"}\n");
            continue;
        }
        json_t *o = json_object();
        json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
        json_object_set_new(o, "time", json_integer((json_int_t)r->time));
        json_object_set_new(
            o, "event", json_string(enum_name(&keten__event__descriptor, r->event, "EVENT_")));
        if (r->msg_id.len > 0) {
            json_object_set_new(o, "msg_id", hexval(r->msg_id.data, r->msg_id.len));
        }
        json_object_set_new(o, "sender", json_string(r->sender));
        json_object_set_new(o, "node", json_string(r->node));
        json_t *rc_arr = json_array();
        for (size_t i = 0; i < r->n_recipients; i++) {
            json_array_append_new(rc_arr, json_string(r->recipients[i]));
        }
        json_object_set_new(o, "recipients", rc_arr);
        json_object_set_new(
            o, "reason", json_string(enum_name(&keten__reason__descriptor, r->reason, "REASON_")));
        json_object_set_new(o, "rule", json_integer(r->rule));
        json_object_set_new(o, "directory_version", json_integer((json_int_t)r->directory_version));
        json_object_set_new(o, "header_bytes", json_integer((json_int_t)r->header.len));
        json_object_set_new(o, "receipt_bytes",
            json_integer(r->receipt != NULL
                    ? (json_int_t)protobuf_c_message_get_packed_size(&r->receipt->base)
                    : 0));
        json_object_set_new(o, "size_bucket", json_integer((json_int_t)r->size_bucket));
        emit(o);
        keten_pb_free((ProtobufCMessage **)(void *)&r);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return 0;
}

/* ---- command line ------------------------------------------------------ */

static const char usage_text[]
    = "Usage: keten-testpeer --home DIR --anchor FILE --directory FILE --broker ENDPOINT\n"
      "                      [--timeout-ms T] [--sign-home DIR] [--transport-key-only] [--cosign]\n"
      "                      [--no-notice-ack] [--no-hello] [--hello-size N] [--credit-first C]\n"
      "                      ACTION [OPTIONS]\n"
      "Actions: submit, seal, submit-raw FILE, replay FILE, connect-only, recv, proof,\n"
      "         dir-request, notice-ack, receipt-batch, cosign --db BROKER_HOME/store;\n"
      "         or (no connection): keten-testpeer audit|checkpoints --db BROKER_HOME/store\n"
      "See the comment at the top of tests/tools/keten-testpeer.c.\n";

static int usage(const char *what)
{
    fprintf(stderr, "keten-testpeer: %s\n%s", what, usage_text);
    return 2;
}

static bool num(const char *s, uint64_t max, uint64_t *out)
{
    return keten_cli_parse_uint(s, 0, max, out);
}

int main(int argc, char **argv)
{
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    keten_cli_init("keten-testpeer");
    peer p;
    memset(&p, 0, sizeof p);
    p.timeout_ms = PEER_TIMEOUT_DEFAULT_MS;
    seal_opts so = { .count = 1, .expires_in = PEER_LIFETIME_DEFAULT_MS };
    uint64_t listen_ms = 1000, count = 1, credit = 0, leaf = 0, after = 0, pokes = 0;
    uint64_t rehello = 0, repeat = 1;
    bool no_receipt = false;
    const char *db = NULL, *envelope = NULL, *tamper = NULL;
    static const struct option opts[] = {
        { "no-hello", no_argument, NULL, 'Y' },
        { "credit-first", required_argument, NULL, 'F' },
        { "rehello", required_argument, NULL, 'G' },
        { "repeat", required_argument, NULL, 'P' },
        { "hello-size", required_argument, NULL, 'Z' },
        { "hold-until", required_argument, NULL, 'u' },
        { "refuse", required_argument, NULL, 'R' },
        { "envelope", required_argument, NULL, 'e' },
        { "tamper", required_argument, NULL, 'T' },
        { "home", required_argument, NULL, 'H' },
        { "anchor", required_argument, NULL, 'a' },
        { "directory", required_argument, NULL, 'd' },
        { "broker", required_argument, NULL, 'b' },
        { "timeout-ms", required_argument, NULL, 't' },
        { "sign-home", required_argument, NULL, 'S' },
        { "transport-key-only", no_argument, NULL, 'X' },
        { "cosign", no_argument, NULL, 'C' },
        { "no-notice-ack", no_argument, NULL, 'Q' },
        { "to", required_argument, NULL, 'o' },
        { "json", required_argument, NULL, 'j' },
        { "kind", required_argument, NULL, 'k' },
        { "count", required_argument, NULL, 'n' },
        { "created-at-offset-ms", required_argument, NULL, 'O' },
        { "expires-in-ms", required_argument, NULL, 'E' },
        { "save-envelope", required_argument, NULL, 's' },
        { "out", required_argument, NULL, 'w' },
        { "wait-receipts", required_argument, NULL, 'W' },
        { "listen-ms", required_argument, NULL, 'l' },
        { "poke-after-refusal", required_argument, NULL, 'K' },
        { "credit", required_argument, NULL, 'c' },
        { "no-receipt", no_argument, NULL, 'N' },
        { "leaf", required_argument, NULL, 'L' },
        { "after", required_argument, NULL, 'A' },
        { "db", required_argument, NULL, 'D' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1 || optind < argc) {
        if (c == -1) {
            /* an action word or its operand: keep the positional ones */
            optind++;
            continue;
        }
        uint64_t v = 0;
        switch (c) {
        case 'H':
            p.home = optarg;
            break;
        case 'a':
            p.anchor_path = optarg;
            break;
        case 'd':
            p.dir_path = optarg;
            break;
        case 'b':
            p.broker = optarg;
            break;
        case 'S':
            p.sign_home = optarg;
            break;
        case 'X':
            p.transport_only = true;
            break;
        case 'C':
            p.cosign = true;
            break;
        case 'Q':
            p.no_notice_ack = true;
            break;
        case 'Y':
            p.no_hello = true;
            break;
        case 'F':
            if (!num(optarg, UINT32_MAX, &p.credit_first) || p.credit_first == 0) {
                return usage("--credit-first");
            }
            break;
        case 'G':
            if (!num(optarg, 1000, &rehello)) {
                return usage("--rehello");
            }
            break;
        case 'P':
            if (!num(optarg, KETEN_RECEIPT_BATCH_MAX, &repeat) || repeat == 0) {
                return usage("--repeat: 1 to 1024");
            }
            break;
        case 'Z':
            if (!num(optarg, UINT64_MAX - 1, &p.hello_size)) {
                return usage("--hello-size");
            }
            break;
        case 'u':
            p.hold_until = optarg;
            break;
        case 'R':
            if (!reason_parse(optarg, &p.refuse)) {
                return usage("--refuse: a reason name such as policy or undecryptable");
            }
            break;
        case 'e':
            envelope = optarg;
            break;
        case 'T':
            tamper = optarg;
            break;
        case 'o':
            so.to = optarg;
            break;
        case 'j':
            so.json_path = optarg;
            break;
        case 'k':
            so.kind = optarg;
            break;
        case 's':
            so.save = optarg;
            break;
        case 'w':
            so.out = optarg;
            break;
        case 'N':
            no_receipt = true;
            break;
        case 'D':
            db = optarg;
            break;
        case 't':
            if (!num(optarg, 3600000, &p.timeout_ms)) {
                return usage("--timeout-ms");
            }
            break;
        case 'n':
            if (!num(optarg, PEER_COUNT_MAX, &v) || v == 0) {
                return usage("--count");
            }
            so.count = count = v;
            break;
        case 'O': {
            char *end = NULL;
            long long off = strtoll(optarg, &end, 10);
            if (end == optarg || *end != '\0') {
                return usage("--created-at-offset-ms");
            }
            so.created_offset = off;
            break;
        }
        case 'E':
            if (!num(optarg, UINT32_MAX * 1000ull, &so.expires_in) || so.expires_in == 0) {
                return usage("--expires-in-ms");
            }
            break;
        case 'W':
            if (!num(optarg, PEER_COUNT_MAX, &so.wait_receipts)) {
                return usage("--wait-receipts");
            }
            break;
        case 'l':
            if (!num(optarg, 3600000, &listen_ms)) {
                return usage("--listen-ms");
            }
            break;
        case 'K':
            if (!num(optarg, 100, &pokes)) {
                return usage("--poke-after-refusal");
            }
            break;
        case 'c':
            if (!num(optarg, 100000, &credit)) {
                return usage("--credit");
            }
            break;
        case 'L':
            if (strcmp(optarg, "next") == 0) {
                leaf = UINT64_MAX; /* the first leaf after the first checkpoint */
            } else if (!num(optarg, UINT64_MAX - 1, &leaf)) {
                return usage("--leaf");
            }
            break;
        case 'A':
            if (!num(optarg, UINT64_MAX - 1, &after)) {
                return usage("--after");
            }
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            return usage("unknown option");
        }
    }
    /* Positional words: the action and its operand, in order. */
    const char *action = NULL, *operand = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            const char *name = argv[i] + 2;
            bool takes = true;
            for (size_t j = 0; opts[j].name != NULL; j++) {
                if (strcmp(opts[j].name, name) == 0) {
                    takes = opts[j].has_arg == required_argument;
                }
            }
            i += takes ? 1 : 0;
            continue;
        }
        if (action == NULL) {
            action = argv[i];
        } else if (operand == NULL) {
            operand = argv[i];
        }
    }
    if (action == NULL) {
        return usage("no action");
    }
    if (strcmp(action, "audit") == 0) {
        return db != NULL ? act_audit(db) : usage("audit needs --db");
    }
    if (strcmp(action, "checkpoints") == 0) {
        return db != NULL ? act_checkpoints(db) : usage("checkpoints needs --db");
    }
    if (p.anchor_path == NULL || p.dir_path == NULL
        || (strcmp(action, "seal") != 0 && p.broker == NULL)
        || (p.home == NULL && !p.transport_only)) {
        return usage("--home, --anchor, --directory and --broker are needed");
    }
    keten_err e = peer_load(&p);
    if (e != KETEN_OK) {
        int r = fail(e, "load");
        peer_close(&p);
        return r;
    }
    int r;
    if (strcmp(action, "submit") == 0 || strcmp(action, "seal") == 0) {
        if (so.to == NULL || so.json_path == NULL || p.me == NULL) {
            peer_close(&p);
            return usage("submit and seal need --home, --to and --json");
        }
        if (strcmp(action, "seal") == 0) {
            r = so.out != NULL ? act_seal(&p, &so) : usage("seal needs --out");
        } else {
            r = act_submit(&p, &so);
        }
    } else if (strcmp(action, "submit-raw") == 0 || strcmp(action, "replay") == 0) {
        r = operand != NULL ? act_raw(&p, operand) : usage("submit-raw FILE");
    } else if (strcmp(action, "connect-only") == 0) {
        r = act_connect_only(&p, listen_ms, pokes);
    } else if (strcmp(action, "recv") == 0) {
        r = act_recv(&p, count, credit > 0 ? credit : count, !no_receipt, rehello);
    } else if (strcmp(action, "proof") == 0) {
        r = act_proof(&p, leaf);
    } else if (strcmp(action, "dir-request") == 0) {
        r = act_dir_request(&p, after);
    } else if (strcmp(action, "notice-ack") == 0) {
        r = act_notice_ack(&p, leaf);
    } else if (strcmp(action, "receipt-batch") == 0) {
        r = envelope != NULL && p.me != NULL
            ? act_receipt_batch(&p, envelope, tamper, repeat, listen_ms)
            : usage("receipt-batch needs --home and --envelope");
    } else if (strcmp(action, "cosign") == 0) {
        r = db != NULL && p.me != NULL ? act_cosign(&p, db, listen_ms)
                                       : usage("cosign needs --home and --db");
    } else {
        r = usage("unknown action");
    }
    peer_close(&p);
    return r;
}
