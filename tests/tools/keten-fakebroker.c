/*
 * keten-fakebroker - a deliberately malicious broker for the node's
 * integration tests (never for production).
 *
 * It uses the real broker's identity file (the test has it), so every
 * signature it makes (checkpoints) is valid under the broker certificate of
 * the directory; it accepts CurveZMQ connections only from current nodes of
 * the directory (a ZAP handler bound before the socket, as the real broker
 * does) and speaks protocol v2 (docs/wire.md): it answers Hello, keeps an
 * in-memory Merkle log (lib/merkle.h) of the records it makes, sends each
 * connection a CheckpointFrame with the consistency proof from the last size
 * it was sent before every proof-carrying frame, proves acks, deliveries and
 * receipt notices with LeafProofs (lib/logproof.h), delivers to connected
 * recipients within their credit, and verifies receipt batches
 * (lib/receipt.h). What it does wrong is chosen with --mode:
 *
 *   honest              all of the above, truthfully
 *   fork                after a node cosigned one of its checkpoints, serves a
 *                       checkpoint of a forked history (leaf 0 rewritten and
 *                       one leaf more), proven from the old size with the
 *                       forked tree's proof
 *   withhold-directory  names in its checkpoints the directory version of
 *                       --named-directory, which it never serves
 *   refuse              answers every submit with a POLICY refusal (rule 7)
 *                       carrying the proof of its `rejected` record, as a
 *                       broker does
 *   refuse-noproof      the same refusal without a proof (an older broker,
 *                       or one that logged no refusal)
 *   refuse-other-msg    the refusal proves a `rejected` record of another
 *                       msg_id (the node's msg_id with its last byte flipped)
 *   refuse-other-reason the refusal proves a `rejected` record of reason
 *                       UNREGISTERED
 *   refuse-other-rule   the refusal proves a `rejected` record of rule 8
 *   refuse-submitted    logs the message's `submitted` record and refuses it
 *                       with the proof of that record
 *   refuse-then-ack     the proven refusal, then the message's `submitted`
 *                       record and its ack too (the log holds both)
 *   ack-other-leaf      acks a node's second and later messages with the
 *                       proof of its first message's record
 *   same-index          puts a node's second message's record at the index of
 *                       its first (a tree of the same size, another root) and
 *                       acks it there
 *   inconsistent        rewrites its history under a new message and acks it
 *                       against a checkpoint not consistent with the old one
 *   bad-path            acks and deliveries whose path does not lead to the
 *                       signed root (one bit flipped)
 *   deliver-bad-leaf    deliveries proven with leaf 0, not the envelope's record
 *   receipt-other-sender  forwards the receipt of a message also to its
 *                       recipient, whose own message it is not
 *   forget-hello        after acking a node's first message, forgets that the
 *                       connection said Hello (as a broker that lost its
 *                       connection state would): later submits are refused
 *                       MALFORMED "send Hello first" until a Hello comes again
 *   expire-early        after acking a message, logs an `expired` record of it
 *                       (dated now, before its expires_at) listing its
 *                       recipients and sends its sender the ExpiredNotice
 *   flood-bad-delivery  sends each delivery --repeat N times (default 50) with
 *                       one hash of its path flipped, the same frame each
 *                       time, then once with its true proof
 *   oversize            answers the first Hello with a delivery frame (no
 *                       proof) of exactly KETEN_FRAME_MAX bytes, then one a
 *                       byte longer; honest after that
 *
 * It prints one line per event on standard output, for the test to read:
 *   ready | connected NODE | hello NODE SIZE | checkpoint SIZE [forked]
 *   directory V | checkpoint-sent NODE SIZE from OLD | ack MSG_ID leaf N |
 *   duplicate MSG_ID leaf N | deliver MSG_ID to NODE leaf N | receipts NODE
 *   COUNT | receipts-refused NODE WHY | receipted|refused-by-recipient MSG_ID
 *   by NODE leaf N | receipt-notice to NODE leaf N | notice-ack NODE COUNT |
 *   cosignature NODE SIZE [forked] | fork SIZE | refused [leaf N] | directory-request
 *   after V | forgot-hello NODE | expired-notice MSG_ID to NODE leaf N |
 *   deliver-bad MSG_ID to NODE times N | oversize-sent NODE. SIGTERM/SIGINT
 *   stop it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "receipt.h"
#include "util.h"
#include "zctx.h"

#define MAX_LEAVES 4096
#define MAX_PEERS 32
#define MAX_MSGS 512
#define MAX_RCPT 8
#define RID_MAX 64

typedef enum mode {
    MODE_HONEST,
    MODE_FORK,
    MODE_WITHHOLD,
    MODE_REFUSE,
    MODE_ACK_OTHER_LEAF,
    MODE_SAME_INDEX,
    MODE_INCONSISTENT,
    MODE_BAD_PATH,
    MODE_DELIVER_BAD_LEAF,
    MODE_RECEIPT_OTHER_SENDER,
    MODE_FORGET_HELLO,
    MODE_EXPIRE_EARLY,
    MODE_FLOOD_BAD_DELIVERY,
    MODE_OVERSIZE,
    MODE_REFUSE_NOPROOF,
    MODE_REFUSE_OTHER_MSG,
    MODE_REFUSE_OTHER_REASON,
    MODE_REFUSE_OTHER_RULE,
    MODE_REFUSE_SUBMITTED,
    MODE_REFUSE_THEN_ACK,
} mode;

static const char *const mode_names[] = {
    [MODE_HONEST] = "honest",
    [MODE_FORK] = "fork",
    [MODE_WITHHOLD] = "withhold-directory",
    [MODE_REFUSE] = "refuse",
    [MODE_ACK_OTHER_LEAF] = "ack-other-leaf",
    [MODE_SAME_INDEX] = "same-index",
    [MODE_INCONSISTENT] = "inconsistent",
    [MODE_BAD_PATH] = "bad-path",
    [MODE_DELIVER_BAD_LEAF] = "deliver-bad-leaf",
    [MODE_RECEIPT_OTHER_SENDER] = "receipt-other-sender",
    [MODE_FORGET_HELLO] = "forget-hello",
    [MODE_EXPIRE_EARLY] = "expire-early",
    [MODE_FLOOD_BAD_DELIVERY] = "flood-bad-delivery",
    [MODE_OVERSIZE] = "oversize",
    [MODE_REFUSE_NOPROOF] = "refuse-noproof",
    [MODE_REFUSE_OTHER_MSG] = "refuse-other-msg",
    [MODE_REFUSE_OTHER_REASON] = "refuse-other-reason",
    [MODE_REFUSE_OTHER_RULE] = "refuse-other-rule",
    [MODE_REFUSE_SUBMITTED] = "refuse-submitted",
    [MODE_REFUSE_THEN_ACK] = "refuse-then-ack",
};

typedef struct mlog {
    uint8_t *leaf[MAX_LEAVES];
    size_t len[MAX_LEAVES];
    keten_hash hash[MAX_LEAVES];
    uint64_t n;
} mlog;

typedef struct peer {
    uint8_t rid[RID_MAX];
    size_t rid_len;
    char node[KETEN_NAME_MAX + 1];
    bool hello; /* said Hello: gets checkpoints and proofs */
    bool forgot; /* forget-hello: its Hello was forgotten once */
    uint64_t cp_sent; /* size of the last checkpoint sent to it */
    uint32_t credit;
} peer;

/* A submitted message and who has it. */
typedef struct msg {
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t env_hash[KETEN_HASH_BYTES];
    char sender[KETEN_NAME_MAX + 1];
    uint8_t *env;
    size_t env_len;
    uint64_t leaf; /* its submitted record */
    char rcpt[MAX_RCPT][KETEN_NAME_MAX + 1];
    bool delivered[MAX_RCPT];
    size_t n_rcpt;
} msg;

typedef struct fake {
    mode mode;
    keten_identity *me;
    Keten__Anchor *anchor;
    keten_directory *dir;
    keten_directory *named; /* withhold-directory: the version named, never served */
    const char *refuse_detail; /* refuse: the Error's detail (--refuse-detail) */
    uint64_t repeat; /* flood-bad-delivery: false copies of each delivery (--repeat) */
    bool oversize_sent; /* oversize: the two frames went out */
    void *ctx, *zap, *router;
    mlog log; /* the history served */
    mlog original; /* fork: the history before the fork */
    bool forked;
    uint64_t cosigned; /* cosignatures received before the fork */
    peer peers[MAX_PEERS];
    size_t n_peers;
    msg msgs[MAX_MSGS];
    size_t n_msgs;
    uint64_t last_cp_size;
} fake;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void say(const char *fmt, ...) KETEN_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static keten_err log_append(mlog *l, const uint8_t *leaf, size_t len)
{
    if (l->n >= MAX_LEAVES) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "fake log full");
    }
    l->leaf[l->n] = malloc(len ? len : 1);
    if (l->leaf[l->n] == NULL) {
        return KETEN_ERR_NOMEM;
    }
    memcpy(l->leaf[l->n], leaf, len);
    l->len[l->n] = len;
    keten_merkle_leaf_hash(leaf, len, l->hash[l->n]);
    l->n++;
    return KETEN_OK;
}

static void log_free(mlog *l)
{
    for (uint64_t i = 0; i < l->n; i++) {
        free(l->leaf[i]);
    }
    l->n = 0;
}

static keten_err append_record(fake *f, mlog *l, Keten__AuditRecord *r)
{
    r->seq = l->n;
    r->time = keten_now_ms();
    r->directory_version = keten_directory_version(f->dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    keten_err e = keten_pb_pack((const ProtobufCMessage *)r, &buf, &len);
    if (e == KETEN_OK) {
        e = log_append(l, buf, len);
    }
    free(buf);
    return e;
}

/* ---- ZAP: admit current nodes of the directory, name them ------------- */

static void zap_handle(fake *f)
{
    zmq_msg_t part[8];
    int n = 0;
    bool more = true;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], f->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part[n]);
            break;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    const char *status = "400", *text = "unknown key";
    const char *user = "";
    if (n >= 7 && zmq_msg_size(&part[5]) == 5 && memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0
        && zmq_msg_size(&part[6]) == KETEN_CURVE_KEY_BYTES) {
        const Keten__NodeCert *c = keten_directory_find_transport(f->dir, zmq_msg_data(&part[6]));
        if (c != NULL && strcmp(c->role, "broker") != 0) {
            status = "200";
            text = "OK";
            user = c->id;
        }
    }
    if (n >= 2) {
        zmq_send(f->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(f->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
        zmq_send(f->zap, status, 3, ZMQ_SNDMORE);
        zmq_send(f->zap, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(f->zap, user, strlen(user), ZMQ_SNDMORE);
        zmq_send(f->zap, "", 0, 0);
    }
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&part[i]);
    }
}

/* ---- sending ---------------------------------------------------------- */

static void send_to(fake *f, const uint8_t *rid, size_t rid_len, const Keten__Frame *frame)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (keten_pb_pack((const ProtobufCMessage *)frame, &buf, &len) != KETEN_OK) {
        return;
    }
    if (zmq_send(f->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) {
        (void)zmq_send(f->router, buf, len, ZMQ_DONTWAIT);
    }
    free(buf);
}

static void send_error(fake *f, const uint8_t *rid, size_t rid_len, uint64_t request_id,
    Keten__Reason reason, const char *detail)
{
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = reason;
    err.detail = (char *)detail;
    Keten__Frame fr = KETEN__FRAME__INIT;
    fr.request_id = request_id;
    fr.body_case = KETEN__FRAME__BODY_ERROR;
    fr.error = &err;
    send_to(f, rid, rid_len, &fr);
}

/* ---- checkpoints ------------------------------------------------------ */

static keten_err sign_tree(fake *f, const mlog *l, uint64_t size, char **note_out)
{
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", keten_directory_network(f->dir));
    cp.size = size;
    keten_merkle_root((const keten_hash *)l->hash, size, cp.root);
    const keten_directory *named = f->named != NULL ? f->named : f->dir;
    cp.dir_version = keten_directory_version(named);
    memcpy(cp.dir_hash, keten_directory_hash(named), KETEN_HASH_BYTES);
    keten_err e = keten_checkpoint_sign(&cp, f->me->id, f->me->log_sk, note_out);
    if (e == KETEN_OK && size != f->last_cp_size) {
        say("checkpoint %llu%s directory %llu", (unsigned long long)size,
            f->forked ? " forked" : "", (unsigned long long)cp.dir_version);
        f->last_cp_size = size;
    }
    return e;
}

/* CheckpointFrame of the served tree to one peer, proven from its cp_sent
 * (the consistency proof comes from `proof_log`, normally the served log;
 * the lies prove from another history). */
static void send_checkpoint_from(fake *f, peer *p, const mlog *proof_log)
{
    char *note = NULL;
    if (sign_tree(f, &f->log, f->log.n, &note) != KETEN_OK) {
        fprintf(stderr, "keten-fakebroker: cannot sign a checkpoint: %s\n", keten_err_detail());
        return;
    }
    keten_hash cons[KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData cons_b[KETEN_MERKLE_MAX_PROOF];
    size_t n_cons = 0;
    if (p->cp_sent > 0 && p->cp_sent < f->log.n
        && keten_merkle_consistency_proof(
               (const keten_hash *)proof_log->hash, p->cp_sent, f->log.n, cons, &n_cons)
            != KETEN_OK) {
        n_cons = 0;
    }
    for (size_t i = 0; i < n_cons; i++) {
        cons_b[i].data = cons[i];
        cons_b[i].len = KETEN_HASH_BYTES;
    }
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    cf.old_size = p->cp_sent;
    cf.consistency = cons_b;
    cf.n_consistency = n_cons;
    cf.witness = true;
    Keten__Frame fr = KETEN__FRAME__INIT;
    fr.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    fr.checkpoint = &cf;
    send_to(f, p->rid, p->rid_len, &fr);
    say("checkpoint-sent %s %llu from %llu", p->node, (unsigned long long)f->log.n,
        (unsigned long long)p->cp_sent);
    p->cp_sent = f->log.n;
    free(note);
}

static void send_checkpoint(fake *f, peer *p)
{
    send_checkpoint_from(f, p, &f->log);
}

/* Before a proof-carrying frame: the checkpoint of the tree it is proven in. */
static void checkpoint_before_proof(fake *f, peer *p)
{
    if (p->cp_sent != f->log.n) {
        send_checkpoint(f, p);
    }
}

/* The proof of leaf index in the served tree (its current size). */
static keten_err leaf_proof(const mlog *l, uint64_t index, keten_logproof_buf *out)
{
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    size_t n = 0;
    keten_err e = keten_merkle_inclusion_proof((const keten_hash *)l->hash, l->n, index, path, &n);
    if (e == KETEN_OK) {
        keten_logproof_set(
            out, l->n, index, l->leaf[index], l->len[index], (const keten_hash *)path, n);
    }
    return e;
}

/* bad-path: the path no longer leads to the root. */
static void spoil_path(fake *f, keten_logproof_buf *b)
{
    if (f->mode == MODE_BAD_PATH && b->msg.n_path > 0) {
        b->path[0][0] ^= 0x01;
    }
}

/* fork: a history that rewrites leaf 0 (the same size, or one leaf more). */
static keten_err rewrite_history(fake *f, bool one_more)
{
    log_free(&f->original);
    f->original = f->log;
    memset(&f->log, 0, sizeof f->log);
    keten_err e = KETEN_OK;
    for (uint64_t i = 0; e == KETEN_OK && i < f->original.n; i++) {
        if (i == 0) {
            Keten__AuditRecord *r = NULL;
            e = KETEN_PB_UNPACK(keten__audit_record, f->original.leaf[0], f->original.len[0],
                KETEN_MERKLE_LEAF_MAX, "leaf", &r);
            if (e == KETEN_OK) {
                r->time += 1; /* the rewrite */
                uint8_t *buf = NULL;
                size_t len = 0;
                e = keten_pb_pack((const ProtobufCMessage *)r, &buf, &len);
                if (e == KETEN_OK) {
                    e = log_append(&f->log, buf, len);
                }
                free(buf);
            }
            keten_pb_free((ProtobufCMessage **)(void *)&r);
        } else {
            e = log_append(&f->log, f->original.leaf[i], f->original.len[i]);
        }
    }
    if (e == KETEN_OK && one_more) {
        Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
        r.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
        r.node = f->me->id;
        e = append_record(f, &f->log, &r);
    }
    f->forked = true;
    return e;
}

static keten_err make_fork(fake *f)
{
    keten_err e = rewrite_history(f, true);
    say("fork %llu", (unsigned long long)f->log.n);
    return e;
}

/* ---- frames from nodes ------------------------------------------------ */

static peer *find_peer_node(fake *f, const char *node)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        if (strcmp(f->peers[i].node, node) == 0 && f->peers[i].hello) {
            return &f->peers[i];
        }
    }
    return NULL;
}

static void send_ack(fake *f, peer *p, uint64_t request_id, uint64_t index, const char *hex)
{
    keten_logproof_buf b;
    if (leaf_proof(&f->log, index, &b) != KETEN_OK) {
        return;
    }
    spoil_path(f, &b);
    checkpoint_before_proof(f, p);
    Keten__SubmitAck sa = KETEN__SUBMIT_ACK__INIT;
    sa.proof = &b.msg;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.request_id = request_id;
    out.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
    out.submit_ack = &sa;
    send_to(f, p->rid, p->rid_len, &out);
    say("ack %s leaf %llu", hex, (unsigned long long)index);
}

/* The POLICY refusal (rule 7) of the submit request_id of msg_id, with the
 * proof of leaf index (none: UINT64_MAX). */
static void send_refusal(
    fake *f, peer *p, uint64_t request_id, ProtobufCBinaryData msg_id, uint64_t index)
{
    keten_logproof_buf b;
    Keten__Error err = KETEN__ERROR__INIT;
    err.reason = KETEN__REASON__REASON_POLICY;
    err.msg_id = msg_id;
    err.detail
        = (char *)(f->refuse_detail != NULL ? f->refuse_detail : "the sharing policy refuses it");
    err.rule = 7;
    if (index != UINT64_MAX) {
        if (leaf_proof(&f->log, index, &b) != KETEN_OK) {
            return;
        }
        checkpoint_before_proof(f, p);
        err.proof = &b.msg;
    }
    Keten__Frame out = KETEN__FRAME__INIT;
    out.request_id = request_id;
    out.body_case = KETEN__FRAME__BODY_ERROR;
    out.error = &err;
    send_to(f, p->rid, p->rid_len, &out);
    if (index != UINT64_MAX) {
        say("refused leaf %llu", (unsigned long long)index);
    } else {
        say("refused");
    }
}

/* The refusal modes but refuse-submitted: log the `rejected` record (true,
 * or false as the mode says) and send the refusal with its proof. */
static void refuse_submit(fake *f, peer *p, uint64_t request_id, ProtobufCBinaryData msg_id)
{
    if (f->mode == MODE_REFUSE_NOPROOF) {
        send_refusal(f, p, request_id, msg_id, UINT64_MAX);
        return;
    }
    uint8_t id[KETEN_MSG_ID_BYTES];
    memcpy(id, msg_id.data, KETEN_MSG_ID_BYTES);
    if (f->mode == MODE_REFUSE_OTHER_MSG) {
        id[KETEN_MSG_ID_BYTES - 1] ^= 0x01;
    }
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.event = KETEN__EVENT__EVENT_REJECTED;
    r.msg_id.data = id;
    r.msg_id.len = KETEN_MSG_ID_BYTES;
    r.sender = p->node;
    r.reason = f->mode == MODE_REFUSE_OTHER_REASON ? KETEN__REASON__REASON_UNREGISTERED
                                                   : KETEN__REASON__REASON_POLICY;
    r.rule = f->mode == MODE_REFUSE_OTHER_RULE ? 8 : f->mode == MODE_REFUSE_OTHER_REASON ? 0 : 7;
    if (append_record(f, &f->log, &r) != KETEN_OK) {
        return;
    }
    send_refusal(f, p, request_id, msg_id, f->log.n - 1);
}

/* expire-early: the `expired` record of m, dated now (before its
 * expires_at), and its notice to the sender. */
static void expire_early(fake *f, peer *p, const msg *m, const char *hex)
{
    char *rcpt[MAX_RCPT];
    for (size_t i = 0; i < m->n_rcpt; i++) {
        rcpt[i] = (char *)m->rcpt[i];
    }
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.event = KETEN__EVENT__EVENT_EXPIRED;
    r.msg_id.data = (uint8_t *)m->msg_id;
    r.msg_id.len = KETEN_MSG_ID_BYTES;
    r.sender = (char *)m->sender;
    r.recipients = rcpt;
    r.n_recipients = m->n_rcpt;
    if (append_record(f, &f->log, &r) != KETEN_OK) {
        return;
    }
    uint64_t index = f->log.n - 1;
    keten_logproof_buf b;
    if (leaf_proof(&f->log, index, &b) != KETEN_OK) {
        return;
    }
    checkpoint_before_proof(f, p);
    Keten__ExpiredNotice en = KETEN__EXPIRED_NOTICE__INIT;
    en.proof = &b.msg;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.body_case = KETEN__FRAME__BODY_EXPIRED;
    out.expired = &en;
    send_to(f, p->rid, p->rid_len, &out);
    say("expired-notice %s to %s leaf %llu", hex, p->node, (unsigned long long)index);
}

static void on_submit(fake *f, peer *p, const Keten__Frame *fr)
{
    keten_envelope_verified *v = NULL;
    if (!p->hello) {
        send_error(f, p->rid, p->rid_len, fr->request_id, KETEN__REASON__REASON_MALFORMED,
            "send Hello first");
        return;
    }
    keten_err e
        = keten_envelope_verify(f->dir, fr->submit->envelope.data, fr->submit->envelope.len, &v);
    if (e != KETEN_OK || strcmp(v->header->sender, p->node) != 0) {
        send_error(
            f, p->rid, p->rid_len, fr->request_id, KETEN__REASON__REASON_BAD_SIGNATURE, "refused");
        keten_envelope_verified_destroy(&v);
        return;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(v->header->msg_id.data, KETEN_MSG_ID_BYTES, hex);
    if (f->mode == MODE_REFUSE || f->mode == MODE_REFUSE_NOPROOF || f->mode == MODE_REFUSE_OTHER_MSG
        || f->mode == MODE_REFUSE_OTHER_REASON || f->mode == MODE_REFUSE_OTHER_RULE) {
        refuse_submit(f, p, fr->request_id, v->header->msg_id);
        keten_envelope_verified_destroy(&v);
        return;
    }
    if (f->mode == MODE_REFUSE_THEN_ACK) {
        bool seen = false;
        for (size_t i = 0; i < f->n_msgs; i++) {
            seen = seen
                || memcmp(f->msgs[i].msg_id, v->header->msg_id.data, KETEN_MSG_ID_BYTES) == 0;
        }
        if (!seen) {
            refuse_submit(f, p, fr->request_id, v->header->msg_id);
        }
    }
    /* Seen before: the DUPLICATE refusal with the proof of the original. */
    for (size_t i = 0; i < f->n_msgs; i++) {
        if (memcmp(f->msgs[i].msg_id, v->header->msg_id.data, KETEN_MSG_ID_BYTES) == 0) {
            keten_logproof_buf b;
            if (leaf_proof(&f->log, f->msgs[i].leaf, &b) == KETEN_OK) {
                spoil_path(f, &b);
                checkpoint_before_proof(f, p);
                Keten__Error err = KETEN__ERROR__INIT;
                err.reason = KETEN__REASON__REASON_DUPLICATE;
                err.msg_id = v->header->msg_id;
                err.detail = (char *)"accepted before";
                err.proof = &b.msg;
                Keten__Frame out = KETEN__FRAME__INIT;
                out.request_id = fr->request_id;
                out.body_case = KETEN__FRAME__BODY_ERROR;
                out.error = &err;
                send_to(f, p->rid, p->rid_len, &out);
                say("duplicate %s leaf %llu", hex, (unsigned long long)f->msgs[i].leaf);
            }
            keten_envelope_verified_destroy(&v);
            return;
        }
    }
    if (f->n_msgs >= MAX_MSGS) {
        keten_envelope_verified_destroy(&v);
        return;
    }
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.event = KETEN__EVENT__EVENT_SUBMITTED;
    r.msg_id = v->header->msg_id;
    r.sender = v->header->sender;
    r.recipients = v->header->recipients;
    r.n_recipients = v->header->n_recipients;
    r.kind = v->header->kind;
    r.category = v->header->category;
    r.purpose = v->header->purpose;
    r.header = v->envelope->header;
    r.ciphertext_hash.data = v->ciphertext_hash;
    r.ciphertext_hash.len = KETEN_HASH_BYTES;
    r.signature = v->envelope->signature;
    r.size_bucket = v->header->padded_len;
    r.envelope_hash.data = v->envelope_hash;
    r.envelope_hash.len = KETEN_HASH_BYTES;
    msg *m = &f->msgs[f->n_msgs];
    memset(m, 0, sizeof *m);
    memcpy(m->msg_id, v->header->msg_id.data, KETEN_MSG_ID_BYTES);
    memcpy(m->env_hash, v->envelope_hash, KETEN_HASH_BYTES);
    snprintf(m->sender, sizeof m->sender, "%s", p->node);
    m->env = malloc(fr->submit->envelope.len);
    if (m->env == NULL) {
        keten_envelope_verified_destroy(&v);
        return;
    }
    memcpy(m->env, fr->submit->envelope.data, fr->submit->envelope.len);
    m->env_len = fr->submit->envelope.len;
    for (size_t i = 0; i < v->header->n_recipients && i < MAX_RCPT; i++) {
        snprintf(m->rcpt[i], sizeof m->rcpt[i], "%s", v->header->recipients[i]);
        m->n_rcpt++;
    }
    uint64_t own_acks = 0;
    for (size_t i = 0; i < f->n_msgs; i++) {
        own_acks += strcmp(f->msgs[i].sender, p->node) == 0 ? 1 : 0;
    }
    if (f->mode == MODE_SAME_INDEX && own_acks > 0) {
        /* The first message's leaf is taken by this one: a tree of the same
         * size with another root. */
        uint64_t idx = 0;
        for (size_t i = 0; i < f->n_msgs; i++) {
            if (strcmp(f->msgs[i].sender, p->node) == 0) {
                idx = f->msgs[i].leaf;
            }
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        r.seq = idx;
        r.time = keten_now_ms();
        r.directory_version = keten_directory_version(f->dir);
        if (keten_pb_pack((const ProtobufCMessage *)&r, &buf, &len) == KETEN_OK) {
            free(f->log.leaf[idx]);
            f->log.leaf[idx] = buf;
            f->log.len[idx] = len;
            keten_merkle_leaf_hash(buf, len, f->log.hash[idx]);
        }
        m->leaf = idx;
        f->n_msgs++;
        p->cp_sent = f->log.n; /* so the new root goes out at once */
        send_checkpoint(f, p);
        send_ack(f, p, fr->request_id, idx, hex);
        keten_envelope_verified_destroy(&v);
        return;
    }
    if (append_record(f, &f->log, &r) != KETEN_OK) {
        free(m->env);
        keten_envelope_verified_destroy(&v);
        return;
    }
    m->leaf = f->log.n - 1;
    f->n_msgs++;
    if (f->mode == MODE_INCONSISTENT) {
        /* History rewritten under the new leaf; the checkpoint's proof comes
         * from the rewritten tree, so it cannot hold. */
        if (rewrite_history(f, false) == KETEN_OK) {
            send_checkpoint_from(f, p, &f->log);
        }
    }
    uint64_t index = m->leaf;
    if (f->mode == MODE_ACK_OTHER_LEAF && own_acks > 0) {
        for (size_t i = 0; i < f->n_msgs - 1; i++) {
            if (strcmp(f->msgs[i].sender, p->node) == 0) {
                index = f->msgs[i].leaf; /* the first message's record */
                break;
            }
        }
    }
    if (f->mode == MODE_REFUSE_SUBMITTED) {
        send_refusal(f, p, fr->request_id, v->header->msg_id, index);
    } else {
        send_ack(f, p, fr->request_id, index, hex);
    }
    keten_envelope_verified_destroy(&v);
    if (f->mode == MODE_EXPIRE_EARLY) {
        expire_early(f, p, m, hex);
    }
    if (f->mode == MODE_FORGET_HELLO && !p->forgot) {
        p->forgot = true;
        p->hello = false;
        say("forgot-hello %s", p->node);
    }
}

/* Deliver what waits for connected recipients with credit. */
static void deliver_pending(fake *f)
{
    for (size_t i = 0; i < f->n_msgs; i++) {
        msg *m = &f->msgs[i];
        for (size_t k = 0; k < m->n_rcpt; k++) {
            if (m->delivered[k]) {
                continue;
            }
            peer *p = find_peer_node(f, m->rcpt[k]);
            if (p == NULL || p->credit == 0) {
                continue;
            }
            uint64_t index = f->mode == MODE_DELIVER_BAD_LEAF ? 0 : m->leaf;
            keten_logproof_buf b;
            if (leaf_proof(&f->log, index, &b) != KETEN_OK) {
                continue;
            }
            spoil_path(f, &b);
            checkpoint_before_proof(f, p);
            Keten__Deliver d = KETEN__DELIVER__INIT;
            d.envelope.data = m->env;
            d.envelope.len = m->env_len;
            d.proof = &b.msg;
            Keten__Frame out = KETEN__FRAME__INIT;
            out.body_case = KETEN__FRAME__BODY_DELIVER;
            out.deliver = &d;
            char hex[KETEN_MSG_ID_HEX_BYTES];
            keten_hex(m->msg_id, KETEN_MSG_ID_BYTES, hex);
            if (f->mode == MODE_FLOOD_BAD_DELIVERY && b.msg.n_path > 0) {
                /* The same false frame again and again, then the true one. */
                b.path[0][0] ^= 0x01;
                for (uint64_t n = 0; n < f->repeat; n++) {
                    send_to(f, p->rid, p->rid_len, &out);
                }
                b.path[0][0] ^= 0x01;
                say("deliver-bad %s to %s times %llu", hex, p->node, (unsigned long long)f->repeat);
            }
            send_to(f, p->rid, p->rid_len, &out);
            m->delivered[k] = true;
            p->credit--;
            say("deliver %s to %s leaf %llu", hex, p->node, (unsigned long long)index);
        }
    }
}

static void send_notice(fake *f, peer *p, uint64_t index)
{
    keten_logproof_buf b;
    if (leaf_proof(&f->log, index, &b) != KETEN_OK) {
        return;
    }
    checkpoint_before_proof(f, p);
    Keten__ReceiptNotice rn = KETEN__RECEIPT_NOTICE__INIT;
    rn.proof = &b.msg;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.body_case = KETEN__FRAME__BODY_RECEIPT_NOTICE;
    out.receipt_notice = &rn;
    send_to(f, p->rid, p->rid_len, &out);
    say("receipt-notice to %s leaf %llu", p->node, (unsigned long long)index);
}

static void on_receipts(fake *f, peer *p, const Keten__ReceiptBatch *rb)
{
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *hashes = NULL;
    const Keten__NodeCert *cert = keten_directory_find_id(f->dir, p->node);
    keten_err e = cert == NULL
        ? KETEN_ERR_UNKNOWN_NODE
        : keten_receipt_batch_verify(cert, keten_directory_network(f->dir), rb, &head, &hashes);
    if (e != KETEN_OK) {
        say("receipts-refused %s %s", p->node, keten_err_detail());
        return;
    }
    say("receipts %s %zu", p->node, rb->n_leaves);
    p->credit += (uint32_t)rb->n_leaves;
    for (size_t i = 0; i < rb->n_leaves; i++) {
        const Keten__ReceiptLeaf *lf = rb->leaves[i];
        msg *m = NULL;
        for (size_t k = 0; k < f->n_msgs; k++) {
            if (keten_receipt_leaf_names(lf, f->msgs[k].msg_id, f->msgs[k].env_hash)) {
                m = &f->msgs[k];
            }
        }
        if (m == NULL) {
            say("receipt-unmatched %s", p->node);
            continue;
        }
        keten_receipt_proof_buf pb;
        if (keten_receipt_proof_build(rb, (const keten_hash *)hashes, i, &pb) != KETEN_OK) {
            continue;
        }
        bool stored = lf->outcome == KETEN__OUTCOME__OUTCOME_STORED;
        Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
        r.event = stored ? KETEN__EVENT__EVENT_RECEIPTED : KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
        r.msg_id.data = m->msg_id;
        r.msg_id.len = KETEN_MSG_ID_BYTES;
        r.sender = m->sender;
        r.node = p->node;
        char *rc[1] = { p->node };
        r.recipients = rc;
        r.n_recipients = 1;
        r.receipt = &pb.msg;
        r.reason = stored ? KETEN__REASON__REASON_NONE : lf->reason;
        e = append_record(f, &f->log, &r);
        keten_receipt_proof_buf_clear(&pb);
        if (e != KETEN_OK) {
            continue;
        }
        uint64_t index = f->log.n - 1;
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(m->msg_id, KETEN_MSG_ID_BYTES, hex);
        say("%s %s by %s leaf %llu", stored ? "receipted" : "refused-by-recipient", hex, p->node,
            (unsigned long long)index);
        peer *sender = find_peer_node(f, m->sender);
        if (sender != NULL) {
            send_notice(f, sender, index);
        }
        if (f->mode == MODE_RECEIPT_OTHER_SENDER) {
            send_notice(f, p, index); /* a record of another sender's message */
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    free(hashes);
}

/* oversize: a Deliver frame (no proof) of exactly `total` bytes. */
static void send_sized(fake *f, const peer *p, size_t total)
{
    size_t env = total - 16;
    for (int round = 0; round < 4; round++) {
        Keten__Deliver d = KETEN__DELIVER__INIT;
        d.envelope.len = env;
        Keten__Frame out = KETEN__FRAME__INIT;
        out.body_case = KETEN__FRAME__BODY_DELIVER;
        out.deliver = &d;
        size_t packed = keten__frame__get_packed_size(&out);
        if (packed == total) {
            d.envelope.data = calloc(1, env);
            uint8_t *buf = malloc(total);
            if (d.envelope.data != NULL && buf != NULL) {
                keten__frame__pack(&out, buf);
                if (zmq_send(f->router, p->rid, p->rid_len, ZMQ_SNDMORE) >= 0) {
                    (void)zmq_send(f->router, buf, total, 0);
                }
            }
            free(buf);
            free(d.envelope.data);
            return;
        }
        env = env + total - packed;
    }
}

static void on_hello(fake *f, peer *p, const Keten__Hello *h)
{
    say("hello %s %llu", p->node, (unsigned long long)h->tree_size);
    if (h->tree_size > f->log.n) {
        char detail[128];
        snprintf(detail, sizeof detail, "your checkpoint has %llu leaves; this log has %llu",
            (unsigned long long)h->tree_size, (unsigned long long)f->log.n);
        send_error(f, p->rid, p->rid_len, 0, KETEN__REASON__REASON_UNKNOWN_CHECKPOINT, detail);
        p->hello = false;
        return;
    }
    p->hello = true;
    p->cp_sent = h->tree_size;
    if (p->cp_sent != f->log.n) {
        send_checkpoint(f, p);
    }
    if (f->mode == MODE_OVERSIZE && !f->oversize_sent) {
        f->oversize_sent = true;
        send_sized(f, p, KETEN_FRAME_MAX);
        send_sized(f, p, (size_t)KETEN_FRAME_MAX + 1);
        say("oversize-sent %s", p->node);
    }
}

static void on_directory_request(
    fake *f, const uint8_t *rid, size_t rid_len, const Keten__Frame *fr)
{
    say("directory-request after %llu", (unsigned long long)fr->directory_request->after_version);
    if (fr->directory_request->after_version >= keten_directory_version(f->dir)) {
        return; /* withhold-directory: the named version is never served */
    }
    size_t len = 0;
    const uint8_t *bytes = keten_directory_bytes(f->dir, &len);
    ProtobufCBinaryData one = { len, (uint8_t *)bytes };
    Keten__DirectoryPush push = KETEN__DIRECTORY_PUSH__INIT;
    push.chain = &one;
    push.n_chain = 1;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.request_id = fr->request_id;
    out.body_case = KETEN__FRAME__BODY_DIRECTORY_PUSH;
    out.directory_push = &push;
    send_to(f, rid, rid_len, &out);
}

static peer *remember_peer(fake *f, const uint8_t *rid, size_t rid_len, const char *node)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        if (f->peers[i].rid_len == rid_len && memcmp(f->peers[i].rid, rid, rid_len) == 0) {
            return &f->peers[i];
        }
    }
    if (f->n_peers >= MAX_PEERS || rid_len > RID_MAX) {
        return NULL;
    }
    peer *p = &f->peers[f->n_peers++];
    memset(p, 0, sizeof *p);
    memcpy(p->rid, rid, rid_len);
    p->rid_len = rid_len;
    snprintf(p->node, sizeof p->node, "%s", node);
    say("connected %s", node);
    return p;
}

static void on_router(fake *f)
{
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, f->router, ZMQ_DONTWAIT) < 0) {
        goto out;
    }
    if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, f->router, ZMQ_DONTWAIT) < 0) {
        goto out;
    }
    const char *user = zmq_msg_gets(&body, "User-Id");
    if (user == NULL || keten_directory_find_id(f->dir, user) == NULL) {
        goto out;
    }
    Keten__Frame *fr = NULL;
    if (KETEN_PB_UNPACK(
            keten__frame, zmq_msg_data(&body), zmq_msg_size(&body), KETEN_FRAME_MAX, "frame", &fr)
        != KETEN_OK) {
        goto out;
    }
    const uint8_t *r = zmq_msg_data(&rid);
    size_t rl = zmq_msg_size(&rid);
    peer *p = remember_peer(f, r, rl, user);
    if (p == NULL) {
        keten_pb_free((ProtobufCMessage **)(void *)&fr);
        goto out;
    }
    switch (fr->body_case) {
    case KETEN__FRAME__BODY_HELLO:
        on_hello(f, p, fr->hello);
        break;
    case KETEN__FRAME__BODY_SUBMIT:
        on_submit(f, p, fr);
        break;
    case KETEN__FRAME__BODY_CREDIT:
        p->credit += fr->credit->credit;
        break;
    case KETEN__FRAME__BODY_RECEIPTS:
        on_receipts(f, p, fr->receipts);
        break;
    case KETEN__FRAME__BODY_NOTICE_ACK:
        say("notice-ack %s %zu", user, fr->notice_ack->n_leaf_indexes);
        break;
    case KETEN__FRAME__BODY_DIRECTORY_REQUEST:
        on_directory_request(f, r, rl, fr);
        break;
    case KETEN__FRAME__BODY_COSIGNATURE:
        say("cosignature %s %llu%s", user, (unsigned long long)fr->cosignature->tree_size,
            f->forked && fr->cosignature->tree_size >= f->log.n ? " forked" : "");
        if (!f->forked) {
            f->cosigned++;
        }
        break;
    default:
        break;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&fr);
out:
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
}

static const char usage_text[]
    = "Usage: keten-fakebroker --home BROKER_HOME --anchor FILE --directory FILE --listen EP\n"
      "                        [--mode honest|fork|withhold-directory|refuse|ack-other-leaf|\n"
      "                                same-index|inconsistent|bad-path|deliver-bad-leaf|\n"
      "                                receipt-other-sender|forget-hello|expire-early|\n"
      "                                flood-bad-delivery|oversize|refuse-noproof|\n"
      "                                refuse-other-msg|refuse-other-reason|refuse-other-rule|\n"
      "                                refuse-submitted|refuse-then-ack]\n"
      "                        [--named-directory FILE] [--checkpoint-ms N]\n"
      "                        [--refuse-detail TEXT]  (the Error's detail in the refuse modes)\n"
      "                        [--repeat N]  (false copies of each delivery in mode\n"
      "                                       flood-bad-delivery; default 50)\n"
      "A malicious broker for tests only (see the comment at the top of its source).\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "anchor", required_argument, NULL, 'a' },
        { "directory", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "mode", required_argument, NULL, 'm' },
        { "named-directory", required_argument, NULL, 'n' },
        { "checkpoint-ms", required_argument, NULL, 'c' },
        { "refuse-detail", required_argument, NULL, 'r' },
        { "repeat", required_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *anchor = NULL, *dirfile = NULL, *listen = NULL, *named = NULL;
    uint64_t cp_ms = 300;
    fake f;
    memset(&f, 0, sizeof f);
    f.repeat = 50;
    int c;
    keten_cli_init("keten-fakebroker");
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'a':
            anchor = optarg;
            break;
        case 'd':
            dirfile = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'n':
            named = optarg;
            break;
        case 'r':
            f.refuse_detail = optarg;
            break;
        case 'R':
            if (!keten_cli_parse_uint(optarg, 1, 100000, &f.repeat)) {
                fputs(usage_text, stderr);
                return 2;
            }
            break;
        case 'c':
            if (!keten_cli_parse_uint(optarg, 10, 60000, &cp_ms)) {
                fputs(usage_text, stderr);
                return 2;
            }
            break;
        case 'm': {
            bool found = false;
            for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
                if (strcmp(optarg, mode_names[i]) == 0) {
                    f.mode = (mode)i;
                    found = true;
                }
            }
            if (!found) {
                fputs(usage_text, stderr);
                return 2;
            }
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (home == NULL || anchor == NULL || dirfile == NULL || listen == NULL
        || (f.mode == MODE_WITHHOLD) != (named != NULL)) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (keten_init() != KETEN_OK) {
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    char path[4096];
    snprintf(path, sizeof path, "%s/identity.secret", home);
    int rc = 1;
    keten_err e = keten_cli_identity_open(path, NULL, &f.me);
    if (e == KETEN_OK) {
        e = keten_directory_anchor_load(anchor, &f.anchor);
    }
    if (e == KETEN_OK) {
        e = keten_directory_load(f.anchor, dirfile, keten_now_ms(), &f.dir);
    }
    if (e == KETEN_OK && named != NULL) {
        uint8_t *buf = NULL;
        size_t len = 0;
        e = keten_file_read(named, KETEN_DIRECTORY_MAX, &buf, &len);
        if (e == KETEN_OK) {
            e = keten_directory_verify(NULL, f.dir, buf, len, keten_now_ms(), &f.named);
        }
        free(buf);
    }
    if (e != KETEN_OK) {
        rc = keten_cli_error(e);
        goto out;
    }
    if (!f.me->has_log_key) {
        fprintf(stderr, "keten-fakebroker: %s is not the broker's key file\n", path);
        goto out;
    }
    /* Leaf 0: the directory installed. */
    Keten__AuditRecord r0 = KETEN__AUDIT_RECORD__INIT;
    r0.event = KETEN__EVENT__EVENT_DIRECTORY_INSTALLED;
    if (append_record(&f, &f.log, &r0) != KETEN_OK) {
        goto out;
    }
    char *first = NULL; /* say what the checkpoints name from the start */
    if (sign_tree(&f, &f.log, f.log.n, &first) != KETEN_OK) {
        goto out;
    }
    free(first);
    f.ctx = zmq_ctx_new();
    f.zap = zmq_socket(f.ctx, ZMQ_REP);
    f.router = zmq_socket(f.ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    if (f.zap == NULL || f.router == NULL || zmq_bind(f.zap, "inproc://zeromq.zap.01") != 0
        || zmq_setsockopt(f.router, ZMQ_LINGER, &zero, sizeof zero) != 0
        || zmq_setsockopt(f.router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(f.router, ZMQ_CURVE_SECRETKEY, f.me->transport_sk, KETEN_CURVE_KEY_BYTES)
            != 0
        || zmq_setsockopt(f.router, ZMQ_ZAP_DOMAIN, "keten", 5) != 0
        || zmq_bind(f.router, listen) != 0) {
        fprintf(stderr, "keten-fakebroker: cannot listen on %s: %s\n", listen,
            zmq_strerror(zmq_errno()));
        goto out;
    }
    (void)zmq_setsockopt(f.zap, ZMQ_LINGER, &zero, sizeof zero);
    say("ready");
    uint64_t next_cp = keten_mono_ms() + cp_ms;
    while (!stop) {
        zmq_pollitem_t items[2] = { { f.zap, 0, ZMQ_POLLIN, 0 }, { f.router, 0, ZMQ_POLLIN, 0 } };
        int n = zmq_poll(items, 2, 50);
        if (n < 0 && zmq_errno() != EINTR) {
            break;
        }
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
            zap_handle(&f);
        }
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) {
            for (int i = 0; i < 64; i++) {
                zmq_pollitem_t again = { f.router, 0, ZMQ_POLLIN, 0 };
                if (zmq_poll(&again, 1, 0) <= 0) {
                    break;
                }
                on_router(&f);
            }
        }
        if (f.mode == MODE_FORK && !f.forked && f.cosigned > 0) {
            if (make_fork(&f) != KETEN_OK) {
                break;
            }
        }
        if (keten_mono_ms() >= next_cp) {
            next_cp = keten_mono_ms() + cp_ms;
            for (size_t i = 0; i < f.n_peers; i++) {
                if (f.peers[i].hello && f.peers[i].cp_sent != f.log.n) {
                    send_checkpoint(&f, &f.peers[i]);
                }
            }
        }
        deliver_pending(&f);
    }
    rc = 0;
out:
    if (f.router != NULL) {
        zmq_close(f.router);
    }
    if (f.zap != NULL) {
        zmq_close(f.zap);
    }
    (void)keten_zctx_term(&f.ctx, KETEN_ZCTX_TERM_MS);
    log_free(&f.log);
    log_free(&f.original);
    for (size_t i = 0; i < f.n_msgs; i++) {
        free(f.msgs[i].env);
    }
    keten_directory_destroy(&f.named);
    keten_directory_destroy(&f.dir);
    keten_pb_free((ProtobufCMessage **)(void *)&f.anchor);
    keten_identity_destroy(&f.me);
    return rc;
}
