/*
 * keten-fakebroker - a deliberately malicious broker for the node's
 * integration tests (never for production).
 *
 * It uses the real broker's identity file (the test has it), so every
 * signature it makes (acks, checkpoints) is valid under the broker
 * certificate of the directory; it accepts CurveZMQ connections only from
 * current nodes of the directory (a ZAP handler bound before the socket,
 * as the real broker does) and speaks the frames of docs/wire.md. It keeps
 * a tiny in-memory Merkle log (lib/merkle.h) so that its honest proofs are
 * valid. What it does wrong is chosen with --mode:
 *
 *   honest              acks and logs submits, serves checkpoints and proofs
 *   ack-unlogged        (a) acks a submit with a properly signed ack whose leaf
 *                       never appears in any checkpoint it serves
 *   fork                (b) after a node cosigned one of its checkpoints, serves
 *                       a checkpoint of a forked history (leaf 0 rewritten and
 *                       one leaf more), signed with the real log key, and the
 *                       proofs of that forked tree
 *   withhold-directory  (c) names in its checkpoints the directory version of
 *                       --named-directory, which it never serves
 *   refuse              answers every submit with a POLICY refusal (rule 7),
 *                       to test how a node reports a broker's refusal
 *
 * It prints one line per event on standard output, for the test to read:
 *   ready | connected NODE | ack MSG_ID leaf N | checkpoint SIZE [forked] |
 *   cosignature NODE SIZE [forked] | proof-request ...
 * It delivers nothing. SIGTERM/SIGINT stop it.
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
#include "merkle.h"
#include "pb.h"
#include "util.h"
#include "zctx.h"

#define MAX_LEAVES 4096
#define MAX_PEERS 32
#define RID_MAX 64

typedef enum mode { MODE_HONEST, MODE_ACK_UNLOGGED, MODE_FORK, MODE_WITHHOLD, MODE_REFUSE } mode;

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
} peer;

typedef struct fake {
    mode mode;
    keten_identity *me;
    Keten__Anchor *anchor;
    keten_directory *dir;
    keten_directory *named; /* withhold-directory: the version named, never served */
    void *ctx, *zap, *router;
    mlog log; /* the history served */
    mlog original; /* fork: the history before the fork */
    bool forked;
    uint64_t cosigned; /* cosignatures received before the fork */
    peer peers[MAX_PEERS];
    size_t n_peers;
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

static void send_checkpoints(fake *f)
{
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", keten_directory_network(f->dir));
    cp.size = f->log.n;
    keten_merkle_root((const keten_hash *)f->log.hash, f->log.n, cp.root);
    const keten_directory *named = f->named != NULL ? f->named : f->dir;
    cp.dir_version = keten_directory_version(named);
    memcpy(cp.dir_hash, keten_directory_hash(named), KETEN_HASH_BYTES);
    char *note = NULL;
    if (keten_checkpoint_sign(&cp, f->me->id, f->me->log_sk, &note) != KETEN_OK) {
        fprintf(stderr, "keten-fakebroker: cannot sign a checkpoint: %s\n", keten_err_detail());
        return;
    }
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = note;
    Keten__Frame fr = KETEN__FRAME__INIT;
    fr.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    fr.checkpoint = &cf;
    for (size_t i = 0; i < f->n_peers; i++) {
        send_to(f, f->peers[i].rid, f->peers[i].rid_len, &fr);
    }
    if (cp.size != f->last_cp_size) {
        say("checkpoint %llu%s directory %llu", (unsigned long long)cp.size,
            f->forked ? " forked" : "", (unsigned long long)cp.dir_version);
        f->last_cp_size = cp.size;
    }
    free(note);
}

/* fork: a history that rewrites leaf 0 and has one leaf more. */
static keten_err make_fork(fake *f)
{
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
    if (e == KETEN_OK) {
        Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
        r.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
        r.node = f->me->id;
        e = append_record(f, &f->log, &r);
    }
    f->forked = true;
    say("fork %llu", (unsigned long long)f->log.n);
    return e;
}

/* ---- frames from nodes ------------------------------------------------ */

static void on_submit(
    fake *f, const uint8_t *rid, size_t rid_len, const char *node, const Keten__Frame *fr)
{
    keten_verified *v = NULL;
    keten_err e
        = keten_envelope_verify(f->dir, fr->submit->envelope.data, fr->submit->envelope.len, &v);
    if (e != KETEN_OK || strcmp(v->header->sender, node) != 0) {
        send_error(f, rid, rid_len, fr->request_id, KETEN__REASON__REASON_BAD_SIGNATURE, "refused");
        keten_verified_destroy(&v);
        return;
    }
    if (f->mode == MODE_REFUSE) {
        Keten__Error err = KETEN__ERROR__INIT;
        err.reason = KETEN__REASON__REASON_POLICY;
        err.msg_id = v->header->msg_id;
        err.detail = (char *)"the sharing policy refuses it";
        err.rule = 7;
        Keten__Frame out = KETEN__FRAME__INIT;
        out.request_id = fr->request_id;
        out.body_case = KETEN__FRAME__BODY_ERROR;
        out.error = &err;
        send_to(f, rid, rid_len, &out);
        say("refused");
        keten_verified_destroy(&v);
        return;
    }
    uint64_t leaf = f->log.n;
    if (f->mode == MODE_ACK_UNLOGGED) {
        leaf = f->log.n + 1000; /* never in any checkpoint served */
    } else {
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
        if (append_record(f, &f->log, &r) != KETEN_OK) {
            keten_verified_destroy(&v);
            return;
        }
    }
    uint8_t *ack = NULL;
    size_t ack_len = 0;
    Keten__Ack *parsed = NULL;
    e = keten_ack_sign(f->me->log_sk, keten_directory_network(f->dir), v->header->msg_id.data,
        v->envelope_hash, leaf, &ack, &ack_len);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__ack, ack, ack_len, KETEN_RECEIPT_MAX, "ack", &parsed);
    }
    if (e == KETEN_OK) {
        Keten__SubmitAck sa = KETEN__SUBMIT_ACK__INIT;
        sa.ack = parsed;
        Keten__Frame out = KETEN__FRAME__INIT;
        out.request_id = fr->request_id;
        out.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
        out.submit_ack = &sa;
        send_to(f, rid, rid_len, &out);
        char hex[KETEN_MSG_ID_HEX_BYTES];
        keten_hex(v->header->msg_id.data, KETEN_MSG_ID_BYTES, hex);
        say("ack %s leaf %llu", hex, (unsigned long long)leaf);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    free(ack);
    keten_verified_destroy(&v);
}

static void on_proof_request(fake *f, const uint8_t *rid, size_t rid_len, const Keten__Frame *fr)
{
    const Keten__ProofRequest *pr = fr->proof_request;
    const mlog *l = &f->log;
    say("proof-request %llu %llu leaves %zu", (unsigned long long)pr->old_size,
        (unsigned long long)pr->tree_size, pr->n_leaf_indexes);
    if (pr->tree_size > l->n || pr->old_size > pr->tree_size || pr->n_leaf_indexes > 256) {
        send_error(
            f, rid, rid_len, fr->request_id, KETEN__REASON__REASON_MALFORMED, "bad proof request");
        return;
    }
    keten_hash cons[KETEN_MERKLE_MAX_PROOF];
    size_t n_cons = 0;
    if (pr->old_size > 0
        && keten_merkle_consistency_proof(
               (const keten_hash *)l->hash, pr->old_size, pr->tree_size, cons, &n_cons)
            != KETEN_OK) {
        n_cons = 0;
    }
    Keten__ProofResponse resp = KETEN__PROOF_RESPONSE__INIT;
    resp.old_size = pr->old_size;
    resp.tree_size = pr->tree_size;
    ProtobufCBinaryData cons_b[KETEN_MERKLE_MAX_PROOF];
    for (size_t i = 0; i < n_cons; i++) {
        cons_b[i].data = cons[i];
        cons_b[i].len = KETEN_HASH_BYTES;
    }
    resp.consistency = cons_b;
    resp.n_consistency = n_cons;
    static Keten__InclusionProof incl[256];
    static Keten__InclusionProof *incl_p[256];
    static keten_hash paths[256][KETEN_MERKLE_MAX_PROOF];
    static ProtobufCBinaryData path_b[256][KETEN_MERKLE_MAX_PROOF];
    size_t n_incl = 0;
    for (size_t i = 0; i < pr->n_leaf_indexes; i++) {
        uint64_t idx = pr->leaf_indexes[i];
        if (idx >= pr->tree_size) {
            continue;
        }
        size_t plen = 0;
        if (keten_merkle_inclusion_proof(
                (const keten_hash *)l->hash, pr->tree_size, idx, paths[n_incl], &plen)
            != KETEN_OK) {
            continue;
        }
        Keten__InclusionProof *p = &incl[n_incl];
        keten__inclusion_proof__init(p);
        p->leaf_index = idx;
        p->leaf_hash.data = (uint8_t *)l->hash[idx];
        p->leaf_hash.len = KETEN_HASH_BYTES;
        p->leaf.data = l->leaf[idx];
        p->leaf.len = l->len[idx];
        for (size_t k = 0; k < plen; k++) {
            path_b[n_incl][k].data = paths[n_incl][k];
            path_b[n_incl][k].len = KETEN_HASH_BYTES;
        }
        p->path = path_b[n_incl];
        p->n_path = plen;
        incl_p[n_incl] = p;
        n_incl++;
    }
    resp.inclusions = incl_p;
    resp.n_inclusions = n_incl;
    Keten__Frame out = KETEN__FRAME__INIT;
    out.request_id = fr->request_id;
    out.body_case = KETEN__FRAME__BODY_PROOF_RESPONSE;
    out.proof_response = &resp;
    send_to(f, rid, rid_len, &out);
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

static void remember_peer(fake *f, const uint8_t *rid, size_t rid_len, const char *node)
{
    for (size_t i = 0; i < f->n_peers; i++) {
        if (f->peers[i].rid_len == rid_len && memcmp(f->peers[i].rid, rid, rid_len) == 0) {
            return;
        }
    }
    if (f->n_peers >= MAX_PEERS || rid_len > RID_MAX) {
        return;
    }
    peer *p = &f->peers[f->n_peers++];
    memcpy(p->rid, rid, rid_len);
    p->rid_len = rid_len;
    snprintf(p->node, sizeof p->node, "%s", node);
    say("connected %s", node);
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
    remember_peer(f, r, rl, user);
    switch (fr->body_case) {
    case KETEN__FRAME__BODY_SUBMIT:
        on_submit(f, r, rl, user, fr);
        break;
    case KETEN__FRAME__BODY_PROOF_REQUEST:
        on_proof_request(f, r, rl, fr);
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
      "                        [--mode honest|ack-unlogged|fork|withhold-directory|refuse]\n"
      "                        [--named-directory FILE] [--checkpoint-ms N]\n"
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
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *anchor = NULL, *dirfile = NULL, *listen = NULL, *named = NULL;
    uint64_t cp_ms = 300;
    fake f;
    memset(&f, 0, sizeof f);
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
        case 'c':
            if (!keten_cli_parse_uint(optarg, 10, 60000, &cp_ms)) {
                fputs(usage_text, stderr);
                return 2;
            }
            break;
        case 'm':
            if (strcmp(optarg, "honest") == 0) {
                f.mode = MODE_HONEST;
            } else if (strcmp(optarg, "ack-unlogged") == 0) {
                f.mode = MODE_ACK_UNLOGGED;
            } else if (strcmp(optarg, "fork") == 0) {
                f.mode = MODE_FORK;
            } else if (strcmp(optarg, "withhold-directory") == 0) {
                f.mode = MODE_WITHHOLD;
            } else if (strcmp(optarg, "refuse") == 0) {
                f.mode = MODE_REFUSE;
            } else {
                fputs(usage_text, stderr);
                return 2;
            }
            break;
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
        e = keten_anchor_load(anchor, &f.anchor);
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
            send_checkpoints(&f);
        }
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
    keten_directory_destroy(&f.named);
    keten_directory_destroy(&f.dir);
    keten_pb_free((ProtobufCMessage **)(void *)&f.anchor);
    keten_identity_destroy(&f.me);
    return rc;
}
