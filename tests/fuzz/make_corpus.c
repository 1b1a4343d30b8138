/*
 * make_corpus.c - writes the seed corpora of the fuzz harnesses:
 *
 *     fuzz-make-corpus OUTDIR      (OUTDIR/<harness>/<input>)
 *
 * Every input is made with libketen's own functions against the fixed test
 * network of fuzz_common.c (public test keys from fixed seeds, fixed times),
 * so that the harnesses verify them against the same network. Each corpus
 * holds real, valid inputs and a few malformed ones.
 *
 * The random generator is replaced by a fixed-seed one before libsodium is
 * initialised, so that the output is the same on every run (msg_ids, nonces,
 * ephemeral keys of the sealed boxes, key file salts): regenerating the
 * committed corpus changes nothing. This program is a test tool; nothing it
 * makes belongs to a real network.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "envelope.h"
#include "fuzz_common.h"
#include "logproof.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "sha256.h"
#include "signal_json.h"
#include "util.h"

/* ---- a deterministic randombytes implementation ------------------------- */

static uint64_t rng_state = 0x6b6574656e2d667aull; /* "keten-fz" */

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *rng_name(void)
{
    return "keten-fuzz-corpus";
}

static uint32_t rng_random(void)
{
    return (uint32_t)(splitmix64() >> 32);
}

static void rng_stir(void)
{
}

static void rng_buf(void *const buf, const size_t size)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < size; i++) {
        p[i] = (uint8_t)(splitmix64() >> 56);
    }
}

static int rng_close(void)
{
    return 0;
}

static randombytes_implementation fixed_rng = {
    .implementation_name = rng_name,
    .random = rng_random,
    .stir = rng_stir,
    .uniform = NULL,
    .buf = rng_buf,
    .close = rng_close,
};

/* Runs before the default-priority constructors (libketen's sodium_init). */
__attribute__((constructor(101))) static void install_fixed_rng(void)
{
    (void)randombytes_set_implementation(&fixed_rng);
}

/* ---- output ----------------------------------------------------------------- */

static const char *outdir;

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "fuzz-make-corpus: " __VA_ARGS__);                                         \
        fprintf(stderr, " (%s)\n", keten_err_detail());                                            \
        exit(1);                                                                                   \
    } while (0)

#define MUST(call)                                                                                 \
    do {                                                                                           \
        keten_err must_e_ = (call);                                                                \
        if (must_e_ != KETEN_OK) {                                                                 \
            DIE("%s: %s", #call, keten_err_str(must_e_));                                         \
        }                                                                                          \
    } while (0)

static void put(const char *harness, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        DIE("cannot make %s: %s", path, strerror(errno));
    }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        DIE("cannot write %s: %s", path, strerror(errno));
    }
}

static void put_str(const char *harness, const char *name, const char *s)
{
    put(harness, name, s, strlen(s));
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *out = NULL;
    MUST(keten_pb_pack(m, &out, len));
    return out;
}

/* A copy of buf with extra bytes appended (malformed variants). */
static uint8_t *append(
    const uint8_t *buf, size_t len, const uint8_t *extra, size_t extra_len, size_t *out_len)
{
    uint8_t *out = malloc(len + extra_len);
    if (out == NULL) {
        DIE("out of memory");
    }
    memcpy(out, buf, len);
    memcpy(out + len, extra, extra_len);
    *out_len = len + extra_len;
    return out;
}

static void put_flipped(
    const char *harness, const char *name, const uint8_t *buf, size_t len, size_t at)
{
    uint8_t *copy = append(buf, len, NULL, 0, &len);
    copy[at % len] ^= 0x01;
    put(harness, name, copy, len);
    free(copy);
}

/* ---- envelopes ---------------------------------------------------------- */

static const char *const json_woonfraude
    = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\","
      "\"summary\":\"Adres staat op naam van 9 personen; ramen afgeplakt\",\"nature\":\"soft\","
      "\"grading\":{\"source\":\"B\",\"information\":\"2\"},\"handling\":\"TLP:AMBER\","
      "\"observed_at\":\"2026-01-01T10:30:00Z\",\"observed_by\":\"handhaver\","
      "\"subjects\":[{\"kind\":\"address\",\"value\":\"Hoofdstraat 1, 1111 AA Diemen\"},"
      "{\"kind\":\"company\",\"value\":\"KvK 12345678\"}],"
      "\"attachments\":[{\"name\":\"foto.jpg\",\"media_type\":\"image/jpeg\","
      "\"data_base64\":\"/9j/4AAQSkZJRgABAQ==\"}]}";
static const char *const json_query = "{\"type\":\"adrescheck\",\"purpose\":\"handhaving\","
                                      "\"summary\":\"Thematische adrescontrole Hoofdstraat\","
                                      "\"nature\":\"hard\",\"handling\":\"TLP:GREEN\","
                                      "\"subjects\":[{\"kind\":\"address\","
                                      "\"value\":\"Hoofdstraat 1, 1111 AA Diemen\"}]}";
static const char *const json_reply = "{\"type\":\"adrescheck\",\"purpose\":\"handhaving\","
                                      "\"summary\":\"Geen registratie\",\"nature\":\"hard\"}";
static const char *const json_feedback
    = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\","
      "\"summary\":\"Opgepakt in het RIEC-overleg\",\"handling\":\"TLP:CLEAR\"}";
static const char *const json_mensenhandel
    = "{\"type\":\"mensenhandel\",\"purpose\":\"riec-convenant/art-5\","
      "\"summary\":\"Veel wisselende bewoners\",\"nature\":\"soft\","
      "\"grading\":{\"source\":\"C\",\"information\":\"3\"},\"handling\":\"TLP:RED\"}";

static uint8_t *seal(const char *from, const char *const *to, size_t n_to, Keten__Kind kind,
    const char *json, const uint8_t *in_reply_to, uint64_t created, uint64_t expires,
    uint8_t msg_id[KETEN_MSG_ID_BYTES], size_t *len)
{
    const fuzz_network *net = fuzz_net();
    Keten__Signal *sig = NULL;
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    MUST(keten_signal_json_parse(json, strlen(json), &sig));
    MUST(keten_signal_json_pack(sig, &payload, &payload_len));
    keten_envelope_seal_params p = {
        .kind = kind,
        .category = sig->type,
        .purpose = sig->purpose,
        .in_reply_to = in_reply_to,
        .created_at = created,
        .expires_at = expires,
    };
    uint8_t *out = NULL;
    MUST(keten_envelope_seal(
        fuzz_node(from), net->d1, to, n_to, &p, payload, payload_len, msg_id, &out, len));
    free(payload);
    keten_signal_json_free(&sig);
    return out;
}

#define LOG_LEAVES 7 /* the audit records of the corpus log */

typedef struct made {
    uint8_t *env1; /* gemeente-diemen -> politie-mn, signal */
    size_t env1_len;
    uint8_t id1[KETEN_MSG_ID_BYTES];
    uint8_t hash1[KETEN_HASH_BYTES]; /* SHA-256 of env1 */
    uint8_t *env2; /* gemeente-diemen -> three, query */
    size_t env2_len;
    uint8_t id2[KETEN_MSG_ID_BYTES];
    uint8_t hash2[KETEN_HASH_BYTES];
    /* politie-mn's receipt batch (env1 and env2 stored) and belastingdienst's
     * (env2 refused); the receipt proofs of env1 and of the refusal. */
    keten_receipt_batch *batch_politie;
    keten_receipt_batch *batch_belasting;
    keten_receipt_proof_buf proof_stored;
    keten_receipt_proof_buf proof_refused;
    keten_hash *lh_politie;
    keten_hash *lh_belasting;
    /* audit records 0..6: submitted, delivered, receipted, directory-installed,
     * rejected, refused-by-recipient, expired */
    uint8_t *leaves[LOG_LEAVES];
    size_t leaf_lens[LOG_LEAVES];
    keten_hash lh[LOG_LEAVES];
    char *note; /* checkpoint over the 7 leaves, with cosignatures */
    char *note3; /* checkpoint over the first 3 leaves */
    char *cosig_line; /* politie-mn's cosignature line */
} made;

static void envelopes(made *m)
{
    static const char *const to_politie[] = { "politie-mn" };
    static const char *const to_three[] = { "politie-mn", "belastingdienst", "woningcorp" };
    static const char *const to_gemeente[] = { "gemeente-diemen" };
    uint8_t id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *e;

    m->env1 = seal("gemeente-diemen", to_politie, 1, KETEN__KIND__KIND_SIGNAL, json_woonfraude,
        NULL, FUZZ_T_SEAL, FUZZ_T_SEAL + FUZZ_LIFETIME_MS, m->id1, &m->env1_len);
    put("envelope", "signal-gemeente-to-politie", m->env1, m->env1_len);
    m->env2 = seal("gemeente-diemen", to_three, 3, KETEN__KIND__KIND_QUERY, json_query, NULL,
        FUZZ_T_SEAL, FUZZ_T_SEAL + FUZZ_LIFETIME_MS, m->id2, &m->env2_len);
    put("envelope", "query-gemeente-to-three", m->env2, m->env2_len);

    e = seal("politie-mn", to_gemeente, 1, KETEN__KIND__KIND_REPLY, json_reply, m->id2,
        FUZZ_T_SEAL + 1000, FUZZ_T_SEAL + FUZZ_LIFETIME_MS, id, &len);
    put("envelope", "reply-politie-to-gemeente", e, len);
    free(e);
    e = seal("gemeente-diemen", to_politie, 1, KETEN__KIND__KIND_FEEDBACK, json_feedback, m->id1,
        FUZZ_T_SEAL + 2000, FUZZ_T_SEAL + FUZZ_LIFETIME_MS, id, &len);
    put("envelope", "feedback-gemeente-to-politie", e, len);
    free(e);
    static const char *const to_politie_from_housing[] = { "politie-mn" };
    e = seal("woningcorp", to_politie_from_housing, 1, KETEN__KIND__KIND_SIGNAL, json_mensenhandel,
        NULL, FUZZ_T_SEAL, FUZZ_T_SEAL + FUZZ_LIFETIME_MS, id, &len);
    put("envelope", "policy-denied-woningcorp-to-politie", e, len);
    free(e);
    e = seal("gemeente-diemen", to_politie, 1, KETEN__KIND__KIND_SIGNAL, json_feedback, NULL,
        FUZZ_T0 + 1000, FUZZ_T0 + 2000, id, &len);
    put("envelope", "expired", e, len);
    free(e);

    /* A 4 KiB bucket: a long summary. */
    char big[3200];
    int n = snprintf(big, sizeof big,
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\",\"summary\":\"");
    while ((size_t)n < sizeof big - 8) {
        big[n++] = 'x';
    }
    memcpy(big + n, "\"}", 3);
    e = seal("belastingdienst", to_gemeente, 1, KETEN__KIND__KIND_SIGNAL, big, NULL, FUZZ_T_SEAL,
        FUZZ_T_SEAL + FUZZ_LIFETIME_MS, id, &len);
    put("envelope", "signal-4k-bucket", e, len);
    free(e);

    /* Malformed variants of envelope 1. */
    put("envelope", "malformed-truncated", m->env1, m->env1_len / 2);
    put_flipped("envelope", "malformed-header-bitflip", m->env1, m->env1_len, 40);
    put_flipped(
        "envelope", "malformed-ciphertext-bitflip", m->env1, m->env1_len, m->env1_len - 100);
    put("envelope", "malformed-empty", "", 0);
    Keten__Envelope *env = NULL;
    MUST(KETEN_PB_UNPACK(keten__envelope, m->env1, m->env1_len, KETEN_ENVELOPE_MAX, "e", &env));
    char *hint = env->sender;
    env->sender = (char *)"onbekend";
    e = pack(&env->base, &len);
    put("envelope", "malformed-unknown-sender", e, len);
    free(e);
    env->sender = hint;
    ProtobufCBinaryData sig = env->signature;
    uint8_t zero[KETEN_SIG_BYTES] = { 0 };
    env->signature.data = zero;
    e = pack(&env->base, &len);
    put("envelope", "malformed-zero-signature", e, len);
    free(e);
    env->signature = sig;

    /* Headers: the signed bytes of the envelopes, and non-canonical ones. */
    put("header", "header-signal", env->header.data, env->header.len);
    static const uint8_t dup_network[] = { 0x0a, 0x07, 'f', 'u', 'z', 'z', 'n', 'e', 't' };
    e = append(env->header.data, env->header.len, dup_network, sizeof dup_network, &len);
    put("header", "malformed-duplicated-network", e, len);
    free(e);
    static const uint8_t unknown_field[] = { 0xf8, 0x06, 0x01 }; /* field 111, varint 1 */
    e = append(env->header.data, env->header.len, unknown_field, sizeof unknown_field, &len);
    put("header", "malformed-unknown-field", e, len);
    free(e);
    static const uint8_t zero_created[] = { 0x28, 0x00 }; /* created_at = 0 written out */
    e = append(env->header.data, env->header.len, zero_created, sizeof zero_created, &len);
    put("header", "malformed-default-written", e, len);
    free(e);
    put("header", "malformed-truncated", env->header.data, env->header.len - 3);
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    MUST(KETEN_PB_UNPACK(keten__envelope, m->env2, m->env2_len, KETEN_ENVELOPE_MAX, "e", &env));
    put("header", "header-query-three", env->header.data, env->header.len);
    keten_pb_free((ProtobufCMessage **)(void *)&env);
}

/* ---- receipts, audit records, checkpoints --------------------------------- */

static keten_receipt_batch *sign_batch(const char *recipient, const keten_receipt_item *items,
    size_t n, const Keten__NodeCert **cert_out)
{
    const fuzz_network *net = fuzz_net();
    const Keten__NodeCert *cert = keten_directory_find_id(net->d1, recipient);
    keten_receipt_batch *b = NULL;
    if (cert == NULL) {
        DIE("%s has no certificate", recipient);
    }
    MUST(keten_receipt_batch_new(
        fuzz_node(recipient), FUZZ_NETWORK, cert->serial, FUZZ_T_OPEN, items, n, &b));
    *cert_out = cert;
    return b;
}

static void receipts(made *m)
{
    const Keten__NodeCert *cert = NULL;
    keten_receipt_item items[2];
    memset(items, 0, sizeof items);
    memcpy(items[0].msg_id, m->id1, KETEN_MSG_ID_BYTES);
    memcpy(items[0].envelope_hash, m->hash1, KETEN_HASH_BYTES);
    items[0].outcome = KETEN__OUTCOME__OUTCOME_STORED;
    items[0].reason = KETEN__REASON__REASON_NONE;
    memcpy(items[1].msg_id, m->id2, KETEN_MSG_ID_BYTES);
    memcpy(items[1].envelope_hash, m->hash2, KETEN_HASH_BYTES);
    items[1].outcome = KETEN__OUTCOME__OUTCOME_STORED;
    items[1].reason = KETEN__REASON__REASON_NONE;
    m->batch_politie = sign_batch("politie-mn", items, 2, &cert);
    Keten__ReceiptBatchHead *head = NULL;
    MUST(keten_receipt_batch_verify(
        cert, FUZZ_NETWORK, &m->batch_politie->msg, &head, &m->lh_politie));
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    MUST(keten_receipt_proof_build(
        &m->batch_politie->msg, (const keten_hash *)m->lh_politie, 0, &m->proof_stored));

    items[1].outcome = KETEN__OUTCOME__OUTCOME_REFUSED;
    items[1].reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    m->batch_belasting = sign_batch("belastingdienst", &items[1], 1, &cert);
    MUST(keten_receipt_batch_verify(
        cert, FUZZ_NETWORK, &m->batch_belasting->msg, &head, &m->lh_belasting));
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    MUST(keten_receipt_proof_build(
        &m->batch_belasting->msg, (const keten_hash *)m->lh_belasting, 0, &m->proof_refused));

    size_t len = 0;
    uint8_t *b = pack(&m->batch_politie->msg.base, &len);
    put("receipt", "batch-politie-two-stored", b, len);
    put("audit", "receipt-batch-two-stored", b, len);
    put_flipped("receipt", "malformed-batch-head-bitflip", b, len, 12);
    free(b);
    b = pack(&m->batch_belasting->msg.base, &len);
    put("receipt", "batch-belastingdienst-refused", b, len);
    put("audit", "receipt-batch-refused", b, len);
    free(b);
    /* The two-leaf batch with its second leaf left out: count and root differ. */
    Keten__ReceiptBatch cut = m->batch_politie->msg;
    cut.n_leaves = 1;
    b = pack(&cut.base, &len);
    put("receipt", "malformed-batch-leaf-missing", b, len);
    free(b);

    b = pack(&m->proof_stored.msg.base, &len);
    put("receipt", "proof-stored", b, len);
    put("audit", "receipt-proof-stored", b, len);
    free(b);
    b = pack(&m->proof_refused.msg.base, &len);
    put("receipt", "proof-refused", b, len);
    put("audit", "receipt-proof-refused", b, len);
    put_flipped("audit", "malformed-receipt-proof-bitflip", b, len, len - 8);
    free(b);
    /* The refused proof with one bit of its leaf flipped (its reason). */
    Keten__ReceiptProof bad = m->proof_refused.msg;
    uint8_t *leaf = append(bad.leaf.data, bad.leaf.len, NULL, 0, &len);
    leaf[len - 1] ^= 0x01;
    bad.leaf.data = leaf;
    b = pack(&bad.base, &len);
    put("receipt", "malformed-proof-leaf-bitflip", b, len);
    free(b);
    free(leaf);
}

/* The LeafProof of leaf i of the corpus log in its tree of `size` leaves. */
static void leafproof(const made *m, uint64_t i, uint64_t size, keten_logproof_buf *out)
{
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    size_t n = 0;
    MUST(keten_merkle_inclusion_proof((const keten_hash *)m->lh, size, i, path, &n));
    keten_logproof_set(out, size, i, m->leaves[i], m->leaf_lens[i], (const keten_hash *)path, n);
}

static char *sign_note(const made *m, uint64_t size)
{
    const fuzz_network *net = fuzz_net();
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", FUZZ_NETWORK);
    cp.size = size;
    keten_merkle_root((const keten_hash *)m->lh, size, cp.root);
    cp.dir_version = 2;
    memcpy(cp.dir_hash, keten_directory_hash(net->d2), KETEN_HASH_BYTES);
    char *note = NULL;
    MUST(keten_checkpoint_sign(&cp, FUZZ_BROKER, fuzz_node(FUZZ_BROKER)->log_sk, &note));
    return note;
}

static void audit_and_checkpoints(made *m)
{
    const fuzz_network *net = fuzz_net();
    keten_envelope_verified *v = NULL;
    MUST(keten_envelope_verify(net->d1, m->env1, m->env1_len, &v));
    crypto_hash_sha256(m->hash1, m->env1, m->env1_len);
    crypto_hash_sha256(m->hash2, m->env2, m->env2_len);
    receipts(m);

    /* 0: submitted */
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    char *recips[] = { (char *)"politie-mn" };
    r.seq = 0;
    r.time = FUZZ_T_SEAL + 5;
    r.event = KETEN__EVENT__EVENT_SUBMITTED;
    r.msg_id.data = m->id1;
    r.msg_id.len = KETEN_MSG_ID_BYTES;
    r.sender = (char *)"gemeente-diemen";
    r.recipients = recips;
    r.n_recipients = 1;
    r.kind = KETEN__KIND__KIND_SIGNAL;
    r.category = v->header->category;
    r.purpose = v->header->purpose;
    r.rule = 1;
    r.header = v->envelope->header;
    r.ciphertext_hash.data = v->ciphertext_hash;
    r.ciphertext_hash.len = KETEN_HASH_BYTES;
    r.signature = v->envelope->signature;
    r.size_bucket = v->header->padded_len;
    r.directory_version = 1;
    r.envelope_hash.data = v->envelope_hash;
    r.envelope_hash.len = KETEN_HASH_BYTES;
    m->leaves[0] = pack(&r.base, &m->leaf_lens[0]);
    put("audit", "record-submitted", m->leaves[0], m->leaf_lens[0]);

    /* 1: delivered; 2: receipted (politie-mn's receipt proof) */
    Keten__AuditRecord d = KETEN__AUDIT_RECORD__INIT;
    d.seq = 1;
    d.time = FUZZ_T_SEAL + 10;
    d.event = KETEN__EVENT__EVENT_DELIVERED;
    d.msg_id = r.msg_id;
    d.sender = r.sender;
    d.node = (char *)"politie-mn";
    d.directory_version = 1;
    m->leaves[1] = pack(&d.base, &m->leaf_lens[1]);
    put("audit", "record-delivered", m->leaves[1], m->leaf_lens[1]);

    d.seq = 2;
    d.time = FUZZ_T_SEAL + 20;
    d.event = KETEN__EVENT__EVENT_RECEIPTED;
    d.recipients = recips;
    d.n_recipients = 1;
    d.receipt = &m->proof_stored.msg;
    m->leaves[2] = pack(&d.base, &m->leaf_lens[2]);
    put("audit", "record-receipted", m->leaves[2], m->leaf_lens[2]);

    /* 3: directory-installed */
    Keten__AuditRecord di = KETEN__AUDIT_RECORD__INIT;
    di.seq = 3;
    di.time = FUZZ_T_SEAL + 30;
    di.event = KETEN__EVENT__EVENT_DIRECTORY_INSTALLED;
    di.directory.data = net->dir2;
    di.directory.len = net->dir2_len;
    di.directory_version = 2;
    m->leaves[3] = pack(&di.base, &m->leaf_lens[3]);
    put("audit", "record-directory-installed", m->leaves[3], m->leaf_lens[3]);

    /* 4: rejected by the policy */
    Keten__AuditRecord rj = KETEN__AUDIT_RECORD__INIT;
    uint8_t rid[KETEN_MSG_ID_BYTES];
    memset(rid, 0x5a, sizeof rid);
    rj.seq = 4;
    rj.time = FUZZ_T_SEAL + 40;
    rj.event = KETEN__EVENT__EVENT_REJECTED;
    rj.msg_id.data = rid;
    rj.msg_id.len = sizeof rid;
    rj.sender = (char *)"woningcorp";
    rj.rule = 2;
    rj.reason = KETEN__REASON__REASON_POLICY;
    rj.directory_version = 2;
    m->leaves[4] = pack(&rj.base, &m->leaf_lens[4]);
    put("audit", "record-rejected-policy", m->leaves[4], m->leaf_lens[4]);

    /* 5: refused by belastingdienst (its receipt proof); 6: expired */
    Keten__AuditRecord rf = KETEN__AUDIT_RECORD__INIT;
    char *bd[] = { (char *)"belastingdienst" };
    rf.seq = 5;
    rf.time = FUZZ_T_SEAL + 50;
    rf.event = KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    rf.msg_id.data = m->id2;
    rf.msg_id.len = KETEN_MSG_ID_BYTES;
    rf.sender = (char *)"gemeente-diemen";
    rf.recipients = bd;
    rf.n_recipients = 1;
    rf.node = (char *)"belastingdienst";
    rf.reason = KETEN__REASON__REASON_INVALID_SIGNAL;
    rf.receipt = &m->proof_refused.msg;
    rf.directory_version = 2;
    m->leaves[5] = pack(&rf.base, &m->leaf_lens[5]);
    put("audit", "record-refused-by-recipient", m->leaves[5], m->leaf_lens[5]);

    Keten__AuditRecord ex = KETEN__AUDIT_RECORD__INIT;
    char *left[] = { (char *)"woningcorp" };
    ex.seq = 6;
    ex.time = FUZZ_T_SEAL + FUZZ_LIFETIME_MS + 60;
    ex.event = KETEN__EVENT__EVENT_EXPIRED;
    ex.msg_id.data = m->id2;
    ex.msg_id.len = KETEN_MSG_ID_BYTES;
    ex.sender = (char *)"gemeente-diemen";
    ex.recipients = left;
    ex.n_recipients = 1;
    ex.directory_version = 2;
    m->leaves[6] = pack(&ex.base, &m->leaf_lens[6]);
    put("audit", "record-expired", m->leaves[6], m->leaf_lens[6]);

    Keten__AuditRecord nc = KETEN__AUDIT_RECORD__INIT;
    size_t len = 0;
    uint8_t *b;
    nc.seq = 7;
    nc.time = FUZZ_T_SEAL + FUZZ_LIFETIME_MS + 70;
    nc.event = KETEN__EVENT__EVENT_NODE_CONNECTED;
    nc.node = (char *)"belastingdienst";
    nc.directory_version = 2;
    b = pack(&nc.base, &len);
    put("audit", "record-node-connected", b, len);
    free(b);
    static const uint8_t dup_seq[] = { 0x08, 0x00 };
    b = append(m->leaves[1], m->leaf_lens[1], dup_seq, sizeof dup_seq, &len);
    put("audit", "malformed-duplicated-seq", b, len);
    free(b);

    for (size_t i = 0; i < LOG_LEAVES; i++) {
        keten_merkle_leaf_hash(m->leaves[i], m->leaf_lens[i], m->lh[i]);
    }
    /* Proofs of single records, for the receipt harness. */
    keten_logproof_buf lp;
    leafproof(m, 0, LOG_LEAVES, &lp);
    b = pack(&lp.msg.base, &len);
    put("receipt", "leafproof-submitted", b, len);
    free(b);
    leafproof(m, 2, LOG_LEAVES, &lp);
    b = pack(&lp.msg.base, &len);
    put("receipt", "leafproof-receipted", b, len);
    free(b);
    leafproof(m, 5, LOG_LEAVES, &lp);
    lp.msg.path[0].data[3] ^= 0x10;
    b = pack(&lp.msg.base, &len);
    put("receipt", "malformed-leafproof-path-bitflip", b, len);
    free(b);

    /* The checkpoints of sizes 3 and 7, signed by the broker; 7 cosigned. */
    m->note3 = sign_note(m, 3);
    char *note = sign_note(m, LOG_LEAVES);
    put_str("checkpoint", "note-signed", note);
    keten_checkpoint cp;
    MUST(keten_checkpoint_open(
        note, strlen(note), FUZZ_BROKER, fuzz_node(FUZZ_BROKER)->log_pk, &cp));
    char *body = NULL;
    MUST(keten_checkpoint_body(&cp, &body));
    put_str("checkpoint", "body-only", body);
    free(body);
    static const char *const witnesses[] = { "gemeente-diemen", "politie-mn", "belastingdienst" };
    for (size_t i = 0; i < 3; i++) {
        char *line = NULL;
        char *with = NULL;
        /* politie-mn cosigns with its version 2 key: the note names version 2. */
        const keten_identity *w
            = strcmp(witnesses[i], "politie-mn") == 0 ? net->politie2 : fuzz_node(witnesses[i]);
        MUST(keten_checkpoint_cosignature_sign(
            note, strlen(note), witnesses[i], w->sign_sk, FUZZ_T_DIR / 1000 + i, &line));
        MUST(keten_checkpoint_add_line(note, strlen(note), line, &with));
        if (strcmp(witnesses[i], "politie-mn") == 0) {
            m->cosig_line = line;
        } else {
            free(line);
        }
        free(note);
        note = with;
        if (i == 0) {
            put_str("checkpoint", "note-one-cosignature", note);
        }
    }
    put_str("checkpoint", "note-three-cosignatures", note);
    m->note = note;
    char *bad = strdup(note);
    if (bad == NULL) {
        DIE("out of memory");
    }
    /* Corrupt the last cosignature's base64 (a character inside it). */
    size_t bl = strlen(bad);
    bad[bl - 10] = bad[bl - 10] == 'A' ? 'B' : 'A';
    put_str("checkpoint", "malformed-bad-cosignature", bad);
    char *blank = strstr(bad, "\n\n");
    if (blank != NULL) {
        memmove(blank, blank + 1, strlen(blank + 1) + 1);
        put_str("checkpoint", "malformed-no-blank-line", bad);
    }
    free(bad);
    put_str("checkpoint", "malformed-extension-line",
        "keten/fuzznet\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        "directory 2 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextra\n\n"
        "\xe2\x80\x94 broker AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
    keten_envelope_verified_destroy(&v);
}


/* ---- proof bundles (keten-audit check-proof) ------------------------------ */

static json_t *b64(const uint8_t *p, size_t len)
{
    size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *t = malloc(n);
    if (t == NULL) {
        DIE("out of memory");
    }
    sodium_bin2base64(t, n, p, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(t);
    free(t);
    return j;
}

/* The event names keten-audit writes (audit/records.c). */
static const char *event_name(int event)
{
    switch (event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        return "submitted";
    case KETEN__EVENT__EVENT_REJECTED:
        return "rejected";
    case KETEN__EVENT__EVENT_DELIVERED:
        return "delivered";
    case KETEN__EVENT__EVENT_RECEIPTED:
        return "receipted";
    case KETEN__EVENT__EVENT_EXPIRED:
        return "expired";
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        return "refused-by-recipient";
    default:
        return "unknown";
    }
}

/* The bundle keten-audit prove writes for msg_id (audit/proof.c): every
 * record of the corpus log naming it, proven in the cosigned tree of 7. */
static json_t *bundle(const made *m, const uint8_t msg_id[KETEN_MSG_ID_BYTES])
{
    const fuzz_network *net = fuzz_net();
    const keten_identity *broker = fuzz_node(FUZZ_BROKER);
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    static const uint8_t nl = '\n', type = 0x01;
    uint8_t h[KETEN_SHA256_BYTES];
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, (const uint8_t *)FUZZ_BROKER, strlen(FUZZ_BROKER));
    keten_sha256_update(&st, &nl, 1);
    keten_sha256_update(&st, &type, 1);
    keten_sha256_update(&st, broker->log_pk, KETEN_SIGN_PK_BYTES);
    keten_sha256_final(&st, h);
    char kid[9];
    keten_hex(h, 4, kid);
    json_t *recs = json_array();
    for (uint64_t i = 0; i < LOG_LEAVES; i++) {
        Keten__AuditRecord *r = NULL;
        MUST(KETEN_PB_UNPACK(keten__audit_record, m->leaves[i], m->leaf_lens[i],
            KETEN_AUDIT_RECORD_MAX, "record", &r));
        bool ours = r->msg_id.len == KETEN_MSG_ID_BYTES
            && memcmp(r->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) == 0;
        int event = (int)r->event;
        keten_pb_free((ProtobufCMessage **)(void *)&r);
        if (!ours) {
            continue;
        }
        keten_hash path[KETEN_MERKLE_MAX_PROOF];
        size_t n = 0;
        MUST(keten_merkle_inclusion_proof((const keten_hash *)m->lh, LOG_LEAVES, i, path, &n));
        json_t *p = json_array();
        for (size_t k = 0; k < n; k++) {
            json_array_append_new(p, b64(path[k], KETEN_HASH_BYTES));
        }
        json_array_append_new(recs,
            json_pack("{s:I, s:I, s:s, s:o, s:o, s:o}", "leaf_index", (json_int_t)i, "tree_size",
                (json_int_t)LOG_LEAVES, "event", event_name(event), "leaf",
                b64(m->leaves[i], m->leaf_lens[i]), "leaf_hash", b64(m->lh[i], KETEN_HASH_BYTES),
                "audit_path", p));
    }
    json_t *dirs = json_pack("[o, o]", b64(net->dir1, net->dir1_len), b64(net->dir2, net->dir2_len));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:o, s:s}, s:o, s:o}", "format",
        "keten-proof/v2", "network", FUZZ_NETWORK, "msg_id", hex, "checkpoint", m->note, "log_key",
        "name", FUZZ_BROKER, "public_key", b64(broker->log_pk, KETEN_SIGN_PK_BYTES), "key_id", kid,
        "directories", dirs, "records", recs);
    if (o == NULL) {
        DIE("cannot build a proof bundle");
    }
    return o;
}

static void put_json(const char *harness, const char *name, const json_t *o)
{
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        DIE("out of memory");
    }
    put_str(harness, name, text);
    free(text);
}

static void proofs(made *m)
{
    json_t *o = bundle(m, m->id1);
    put_json("proof", "bundle-stored", o);
    /* Compact, as another JSON writer would have it. */
    char *text = json_dumps(o, JSON_COMPACT);
    put_str("proof", "bundle-compact", text);
    free(text);
    /* Not a bundle of this version. */
    json_object_set_new(o, "format", json_string("keten-proof/v1"));
    put_json("proof", "malformed-format-v1", o);
    json_decref(o);
    /* Refused by belastingdienst, expired for the others: no submitted
     * record in the log. */
    o = bundle(m, m->id2);
    put_json("proof", "bundle-without-submitted", o);
    json_decref(o);
    /* The delivered record's leaf in place of the submitted one's. */
    o = bundle(m, m->id1);
    json_t *recs = json_object_get(o, "records");
    json_t *r0 = json_array_get(recs, 0);
    json_t *r1 = json_array_get(recs, 1);
    json_t *leaf1 = json_object_get(r1, "leaf");
    json_object_set(r0, "leaf", leaf1);
    put_json("proof", "malformed-leaf-swapped", o);
    json_decref(o);
    /* Only the checkpoint's first directory. */
    o = bundle(m, m->id1);
    json_array_remove(json_object_get(o, "directories"), 1);
    put_json("proof", "malformed-directory-missing", o);
    json_decref(o);
}

/* ---- frames ------------------------------------------------------------- */

static void frame(const char *name, Keten__Frame *f)
{
    size_t len = 0;
    uint8_t *b = pack(&f->base, &len);
    put("frame", name, b, len);
    free(b);
}

static void frames(made *m)
{
    const fuzz_network *net = fuzz_net();
    Keten__Frame f = KETEN__FRAME__INIT;
    keten_logproof_buf lp;

    Keten__Hello hello = KETEN__HELLO__INIT;
    f.body_case = KETEN__FRAME__BODY_HELLO;
    f.hello = &hello;
    frame("hello", &f);
    hello.tree_size = 3;
    frame("hello-reference", &f);

    Keten__Submit sub = KETEN__SUBMIT__INIT;
    sub.envelope.data = m->env1;
    sub.envelope.len = m->env1_len;
    f.request_id = 1;
    f.body_case = KETEN__FRAME__BODY_SUBMIT;
    f.submit = &sub;
    frame("submit", &f);

    /* Acks, deliveries and notices: proofs in the tree of 7 leaves. */
    leafproof(m, 0, LOG_LEAVES, &lp);
    Keten__SubmitAck sa = KETEN__SUBMIT_ACK__INIT;
    sa.proof = &lp.msg;
    f.body_case = KETEN__FRAME__BODY_SUBMIT_ACK;
    f.submit_ack = &sa;
    frame("submit-ack", &f);
    uint8_t *leaf = append(lp.msg.leaf.data, lp.msg.leaf.len, NULL, 0, &lp.msg.leaf.len);
    leaf[lp.msg.leaf.len / 2] ^= 0x04;
    lp.msg.leaf.data = leaf;
    frame("malformed-ack-leaf-bitflip", &f);
    free(leaf);

    leafproof(m, 0, LOG_LEAVES, &lp);
    Keten__Error er = KETEN__ERROR__INIT;
    er.reason = KETEN__REASON__REASON_DUPLICATE;
    er.msg_id.data = m->id1;
    er.msg_id.len = KETEN_MSG_ID_BYTES;
    er.detail = (char *)"msg_id seen before";
    er.proof = &lp.msg;
    f.body_case = KETEN__FRAME__BODY_ERROR;
    f.error = &er;
    frame("error-duplicate-with-proof", &f);
    er.reason = KETEN__REASON__REASON_POLICY;
    er.rule = 2;
    er.proof = NULL;
    er.detail = (char *)"the sharing policy refuses it";
    frame("error-policy", &f);
    er.reason = KETEN__REASON__REASON_UNKNOWN_CHECKPOINT;
    er.rule = 0;
    er.msg_id.len = 0;
    er.msg_id.data = NULL;
    er.detail = (char *)"your checkpoint has 9 leaves; this log has 7";
    f.request_id = 0;
    frame("error-unknown-checkpoint", &f);

    Keten__Deliver dl = KETEN__DELIVER__INIT;
    dl.envelope.data = m->env1;
    dl.envelope.len = m->env1_len;
    dl.proof = &lp.msg;
    f.body_case = KETEN__FRAME__BODY_DELIVER;
    f.deliver = &dl;
    frame("deliver", &f);

    f.body_case = KETEN__FRAME__BODY_RECEIPTS;
    f.receipts = &m->batch_politie->msg;
    frame("receipts", &f);
    f.receipts = &m->batch_belasting->msg;
    frame("receipts-refused", &f);

    Keten__ReceiptNotice rn = KETEN__RECEIPT_NOTICE__INIT;
    leafproof(m, 2, LOG_LEAVES, &lp);
    rn.proof = &lp.msg;
    f.body_case = KETEN__FRAME__BODY_RECEIPT_NOTICE;
    f.receipt_notice = &rn;
    frame("receipt-notice", &f);
    leafproof(m, 5, LOG_LEAVES, &lp);
    frame("receipt-notice-refused", &f);

    Keten__ExpiredNotice ex = KETEN__EXPIRED_NOTICE__INIT;
    leafproof(m, 6, LOG_LEAVES, &lp);
    ex.proof = &lp.msg;
    f.body_case = KETEN__FRAME__BODY_EXPIRED;
    f.expired = &ex;
    frame("expired", &f);

    uint64_t acked[] = { 2, 5, 6 };
    Keten__NoticeAck na = KETEN__NOTICE_ACK__INIT;
    na.leaf_indexes = acked;
    na.n_leaf_indexes = 3;
    f.body_case = KETEN__FRAME__BODY_NOTICE_ACK;
    f.notice_ack = &na;
    frame("notice-ack", &f);

    ProtobufCBinaryData chain[2] = { { net->dir1_len, net->dir1 }, { net->dir2_len, net->dir2 } };
    Keten__DirectoryPush dp = KETEN__DIRECTORY_PUSH__INIT;
    dp.chain = chain;
    dp.n_chain = 2;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_PUSH;
    f.directory_push = &dp;
    frame("directory-push-chain", &f);

    Keten__DirectoryRequest dr = KETEN__DIRECTORY_REQUEST__INIT;
    dr.after_version = 1;
    f.request_id = 7;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    f.directory_request = &dr;
    frame("directory-request", &f);

    /* Checkpoints: the first one a connection gets (from 0), and the witness
     * checkpoint of 7 with its consistency proof from 3. */
    keten_hash cons[KETEN_MERKLE_MAX_PROOF];
    size_t n_cons = 0;
    MUST(keten_merkle_consistency_proof((const keten_hash *)m->lh, 3, LOG_LEAVES, cons, &n_cons));
    ProtobufCBinaryData cons_b[KETEN_MERKLE_MAX_PROOF];
    for (size_t i = 0; i < n_cons; i++) {
        cons_b[i].data = cons[i];
        cons_b[i].len = KETEN_HASH_BYTES;
    }
    Keten__CheckpointFrame cf = KETEN__CHECKPOINT_FRAME__INIT;
    cf.note = m->note3;
    f.request_id = 0;
    f.body_case = KETEN__FRAME__BODY_CHECKPOINT;
    f.checkpoint = &cf;
    frame("checkpoint-first", &f);
    cf.note = m->note;
    cf.old_size = 3;
    cf.consistency = cons_b;
    cf.n_consistency = n_cons;
    cf.witness = true;
    frame("checkpoint", &f);
    cf.old_size = 9;
    frame("malformed-checkpoint-from-larger", &f);

    Keten__Cosignature cs = KETEN__COSIGNATURE__INIT;
    cs.node = (char *)"politie-mn";
    cs.line = m->cosig_line;
    cs.tree_size = LOG_LEAVES;
    f.body_case = KETEN__FRAME__BODY_COSIGNATURE;
    f.cosignature = &cs;
    frame("cosignature", &f);

    uint64_t leaves[] = { 0, 3 };
    Keten__ProofRequest pr = KETEN__PROOF_REQUEST__INIT;
    pr.old_size = 3;
    pr.tree_size = LOG_LEAVES;
    pr.leaf_indexes = leaves;
    pr.n_leaf_indexes = 2;
    f.request_id = 9;
    f.body_case = KETEN__FRAME__BODY_PROOF_REQUEST;
    f.proof_request = &pr;
    frame("proof-request", &f);

    keten_hash paths[2][KETEN_MERKLE_MAX_PROOF];
    ProtobufCBinaryData path_b[2][KETEN_MERKLE_MAX_PROOF];
    Keten__InclusionProof ip[2];
    Keten__InclusionProof *ipp[2];
    for (size_t k = 0; k < 2; k++) {
        size_t n_path = 0;
        MUST(keten_merkle_inclusion_proof(
            (const keten_hash *)m->lh, LOG_LEAVES, leaves[k], paths[k], &n_path));
        keten__inclusion_proof__init(&ip[k]);
        ip[k].leaf_index = leaves[k];
        ip[k].leaf_hash.data = m->lh[leaves[k]];
        ip[k].leaf_hash.len = KETEN_HASH_BYTES;
        for (size_t i = 0; i < n_path; i++) {
            path_b[k][i].data = paths[k][i];
            path_b[k][i].len = KETEN_HASH_BYTES;
        }
        ip[k].path = path_b[k];
        ip[k].n_path = n_path;
        ip[k].leaf.data = m->leaves[leaves[k]];
        ip[k].leaf.len = m->leaf_lens[leaves[k]];
        ipp[k] = &ip[k];
    }
    Keten__ProofResponse rs = KETEN__PROOF_RESPONSE__INIT;
    rs.old_size = 3;
    rs.tree_size = LOG_LEAVES;
    rs.consistency = cons_b;
    rs.n_consistency = n_cons;
    rs.inclusions = ipp;
    rs.n_inclusions = 2;
    f.body_case = KETEN__FRAME__BODY_PROOF_RESPONSE;
    f.proof_response = &rs;
    frame("proof-response", &f);

    Keten__Credit cr = KETEN__CREDIT__INIT;
    cr.credit = 16;
    f.body_case = KETEN__FRAME__BODY_CREDIT;
    f.credit = &cr;
    frame("credit", &f);

    /* Malformed: an unknown field, two bodies, an empty frame. */
    size_t len = 0;
    uint8_t *b = pack(&f.base, &len);
    static const uint8_t unknown_field[] = { 0xf8, 0x06, 0x01 };
    uint8_t *b2 = append(b, len, unknown_field, sizeof unknown_field, &len);
    put("frame", "malformed-unknown-field", b2, len);
    free(b2);
    size_t dr_len = 0;
    f.body_case = KETEN__FRAME__BODY_DIRECTORY_REQUEST;
    uint8_t *b3 = pack(&f.base, &dr_len);
    b2 = append(b, len - sizeof unknown_field, b3, dr_len, &len);
    put("frame", "malformed-two-bodies", b2, len);
    free(b2);
    free(b3);
    free(b);
    put("frame", "empty", "", 0);
}

/* ---- directories, anchors, requests ------------------------------------ */

static void directories(void)
{
    const fuzz_network *net = fuzz_net();
    put("directory", "directory-v1", net->dir1, net->dir1_len);
    put("directory", "directory-v2", net->dir2, net->dir2_len);
    put("directory", "anchor", net->anchor_bytes, net->anchor_len);

    Keten__SignedDirectory *sd = NULL;
    MUST(KETEN_PB_UNPACK(
        keten__signed_directory, net->dir1, net->dir1_len, KETEN_DIRECTORY_MAX, "d", &sd));
    /* Below the threshold: one signature of two. */
    size_t n = sd->n_signatures;
    sd->n_signatures = 1;
    size_t len = 0;
    uint8_t *b = pack(&sd->base, &len);
    put("directory", "malformed-below-threshold", b, len);
    free(b);
    /* One administrator twice. */
    Keten__DirectorySignature *twice[2] = { sd->signatures[0], sd->signatures[0] };
    Keten__DirectorySignature **orig = sd->signatures;
    sd->signatures = twice;
    sd->n_signatures = 2;
    b = pack(&sd->base, &len);
    put("directory", "malformed-same-admin-twice", b, len);
    free(b);
    sd->signatures = orig;
    sd->n_signatures = n;
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    put_flipped("directory", "malformed-bitflip", net->dir1, net->dir1_len, net->dir1_len / 2);

    Keten__Anchor a = *net->anchor;
    a.threshold = 4;
    b = pack(&a.base, &len);
    put("directory", "malformed-anchor-threshold", b, len);
    free(b);
}

static void requests(void)
{
    const fuzz_network *net = fuzz_net();
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        uint8_t *req = NULL;
        size_t len = 0;
        char name[64];
        MUST(keten_identity_request(net->nodes[i], FUZZ_NETWORK, FUZZ_T0, &req, &len));
        snprintf(name, sizeof name, "request-%s", fuzz_node_ids[i]);
        put("request", name, req, len);
        if (i == 0) {
            put_flipped("request", "malformed-bitflip-signature", req, len, len - 5);
            put("request", "malformed-truncated", req, len - 20);
        }
        if (net->nodes[i]->has_log_key) {
            Keten__SignedRequest *sr = NULL;
            MUST(KETEN_PB_UNPACK(
                keten__signed_request, req, len, KETEN_REQUEST_MAX, "request", &sr));
            ProtobufCBinaryData log_sig = sr->log_signature;
            sr->log_signature.data = NULL;
            sr->log_signature.len = 0;
            uint8_t *b = pack(&sr->base, &len);
            put("request", "malformed-broker-without-log-signature", b, len);
            free(b);
            sr->log_signature = log_sig;
            keten_pb_free((ProtobufCMessage **)(void *)&sr);
        }
        free(req);
    }
    uint8_t *req = NULL;
    size_t len = 0;
    MUST(keten_identity_request(net->politie2, "", FUZZ_T_ROTATE, &req, &len));
    put("request", "request-politie-rotated-no-network", req, len);
    free(req);
}

/* ---- key files ------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    MUST(keten_file_read(path, KETEN_KEYFILE_MAX, &buf, len));
    return buf;
}

/* An encrypted key file at the minimum Argon2id limits (fast to fuzz),
 * made from a plain file's body, in the layout of identity.h. */
static uint8_t *encrypt_min(const uint8_t *plain, size_t plain_len, size_t *out_len)
{
    const size_t prefix = 9;
    const size_t header = 65;
    size_t body_len = plain_len - prefix;
    size_t len = header + body_len + KETEN_AEAD_TAG_BYTES;
    uint8_t *f = malloc(len);
    uint8_t key[32];
    if (f == NULL) {
        DIE("out of memory");
    }
    memcpy(f, plain, 8);
    f[8] = 1;
    randombytes_buf(f + 9, 16);
    uint64_t ops = crypto_pwhash_OPSLIMIT_MIN;
    uint64_t mem = crypto_pwhash_MEMLIMIT_MIN;
    for (int i = 0; i < 8; i++) {
        f[25 + i] = (uint8_t)(ops >> (56 - 8 * i));
        f[33 + i] = (uint8_t)(mem >> (56 - 8 * i));
    }
    randombytes_buf(f + 41, KETEN_NONCE_BYTES);
    if (crypto_pwhash(key, sizeof key, FUZZ_PASSPHRASE, strlen(FUZZ_PASSPHRASE), f + 9, ops,
            (size_t)mem, crypto_pwhash_ALG_ARGON2ID13)
            != 0
        || crypto_aead_xchacha20poly1305_ietf_encrypt(
               f + header, NULL, plain + prefix, body_len, f, header, NULL, f + 41, key)
            != 0) {
        DIE("encrypting a key file");
    }
    sodium_memzero(key, sizeof key);
    *out_len = len;
    return f;
}

static void keyfiles(void)
{
    const fuzz_network *net = fuzz_net();
    char tmp[] = "/tmp/keten-fuzz-corpus-XXXXXX";
    if (mkdtemp(tmp) == NULL) {
        DIE("mkdtemp: %s", strerror(errno));
    }
    char path[4096];
    size_t len = 0;
    uint8_t *b;
    static const size_t which[] = { 0, 4 }; /* gemeente-diemen, broker (log key) */
    for (size_t k = 0; k < 2; k++) {
        const keten_identity *id = net->nodes[which[k]];
        snprintf(path, sizeof path, "%s/%s.plain", tmp, id->id);
        MUST(keten_identity_save(id, path, NULL, 0));
        b = read_all(path, &len);
        char name[64];
        snprintf(name, sizeof name, "plain-%s", id->id);
        put("keyfile", name, b, len);
        size_t elen = 0;
        uint8_t *enc = encrypt_min(b, len, &elen);
        snprintf(name, sizeof name, "encrypted-min-kdf-%s", id->id);
        put("keyfile", name, enc, elen);
        if (k == 0) {
            put("keyfile", "malformed-truncated", b, len - 7);
            put_flipped("keyfile", "malformed-plain-bitflip-key", b, len, len - 40);
            put_flipped("keyfile", "malformed-encrypted-bitflip", enc, elen, elen - 3);
            uint8_t *extra = append(b, len, (const uint8_t *)"x", 1, &elen);
            put("keyfile", "malformed-trailing-byte", extra, elen);
            free(extra);
            put("keyfile", "malformed-magic-only", b, 8);
        }
        free(enc);
        free(b);
        unlink(path);
    }
    /* Written by keten_identity_save itself with a passphrase (interactive limits). */
    if (setenv("KETEN_TEST_FAST_KDF", "1", 1) != 0) {
        DIE("setenv");
    }
    snprintf(path, sizeof path, "%s/politie.enc", tmp);
    MUST(keten_identity_save(
        net->nodes[1], path, (const uint8_t *)FUZZ_PASSPHRASE, strlen(FUZZ_PASSPHRASE)));
    b = read_all(path, &len);
    put("keyfile", "encrypted-interactive-kdf-politie-mn", b, len);
    free(b);
    unlink(path);
    put_str("keyfile", "malformed-not-a-key-file", "-----BEGIN PRIVATE KEY-----\n");
    rmdir(tmp);
}

/* ---- signals ------------------------------------------------------------- */

static void signals(void)
{
    put_str("signal", "design-example.json", json_woonfraude);
    put_str("signal", "query.json", json_query);
    put_str("signal", "reply.json", json_reply);
    put_str("signal", "feedback.json", json_feedback);
    put_str("signal", "mensenhandel.json", json_mensenhandel);
    put_str("signal", "observed-ms.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\","
        "\"observed_at\":\"2026-03-04T05:06:07.089Z\",\"summary\":\"caf\\u00e9 \\u2014 "
        "\\ud83d\\ude00\"}");
    put_str("signal", "malformed-unknown-field.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"colour\":\"red\"}");
    put_str("signal", "malformed-soft-without-grading.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\"}");
    put_str("signal", "malformed-bad-grading.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"soft\","
        "\"grading\":{\"source\":\"G\",\"information\":\"7\"}}");
    put_str("signal", "malformed-duplicate-key.json",
        "{\"type\":\"drugs\",\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}");
    put_str("signal", "malformed-bad-base64.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":[{\"name\":\"a\","
        "\"media_type\":\"text/plain\",\"data_base64\":\"!!!\"}]}");
    put("signal", "malformed-invalid-utf8.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":\"\xc3\x28\"}", 58);
    /* Edges of the signal rules, valid and not, where the JSON Schema
     * (docs/signal.schema.json) and the node must agree (tests/tools/signal_schema.py). */
    put_str("signal", "edge-every-field-wrong.json",
        "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\",\"nature\":\"soft"
        "\",\"grading\":\"B2\",\"observed_at\":\"19-11-2026 10:30\",\"subjects\":[{\"kind"
        "\":\"address\",\"address\":\"Hoofdstraat 1\"}],\"handling\":\"AMBER\"}");
    put_str("signal", "edge-label-trailing-newline.json",
        "{\"type\":\"drugs\\n\",\"purpose\":\"handhaving\"}");
    put_str("signal", "edge-observed-at-ms-max.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"253402300799999"
        "\"}");
    put_str("signal", "edge-observed-at-ms-over.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"253402300800000"
        "\"}");
    put_str("signal", "edge-observed-at-offset-zero.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"2026-11-19T10:3"
        "0:00+00:00\"}");
    put_str("signal", "edge-observed-at-offset-one.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_at\":\"2026-11-19T10:3"
        "0:00+01:00\"}");
    put_str("signal", "edge-empty-optional.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":\"\",\"nature\":\"\","
        "\"handling\":\"\",\"observed_by\":\"\",\"subjects\":[],\"attachments\":[{\"name"
        "\":\"leeg.txt\",\"media_type\":\"text/plain\",\"data_base64\":\"\"}]}");
    put_str("signal", "edge-summary-tab-newline.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"summary\":\"regel 1\\n\\tregel "
        "2\"}");
    put_str("signal", "edge-observed-by-newline.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"observed_by\":\"regel 1\\nregel"
        " 2\"}");
    put_str("signal", "edge-attachment-dotdot.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":[{\"name\":\"..\""
        ",\"media_type\":\"text/plain\",\"data_base64\":\"QQ==\"}]}");
    put_str("signal", "edge-media-type-two-slashes.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":[{\"name\":\"a.tx"
        "t\",\"media_type\":\"text/plain/x\",\"data_base64\":\"QQ==\"}]}");
    put_str("signal", "edge-base64-noncanonical.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"attachments\":[{\"name\":\"a.tx"
        "t\",\"media_type\":\"text/plain\",\"data_base64\":\"QR==\"}]}");
    put_str("signal", "edge-subject-kind-uppercase.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"subjects\":[{\"kind\":\"Address"
        "\",\"value\":\"Hoofdstraat 1\"}]}");
    put_str("signal", "edge-grading-extra-field.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\",\"grading\":{"
        "\"source\":\"A\",\"information\":\"1\",\"remark\":\"x\"}}");
    put_str("signal", "edge-grading-null.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"grading\":null}");
    put_str("signal", "edge-hard-graded.json",
        "{\"type\":\"drugs\",\"purpose\":\"handhaving\",\"nature\":\"hard\",\"grading\":{"
        "\"source\":\"A\",\"information\":\"1\"}}");
    put_str("signal", "edge-not-an-object.json", "[\"drugs\",\"handhaving\"]");
    /* The protobuf form (the plaintext inside an envelope). */
    Keten__Signal *sig = NULL;
    uint8_t *b = NULL;
    size_t len = 0;
    MUST(keten_signal_json_parse(json_woonfraude, strlen(json_woonfraude), &sig));
    MUST(keten_signal_json_pack(sig, &b, &len));
    put("signal", "protobuf-design-example", b, len);
    free(b);
    keten_signal_json_free(&sig);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    MUST(keten_init());
    if (strcmp(randombytes_implementation_name(), rng_name()) != 0) {
        DIE("the fixed random generator is not installed");
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        DIE("cannot make %s: %s", outdir, strerror(errno));
    }
    made m;
    memset(&m, 0, sizeof m);
    envelopes(&m);
    audit_and_checkpoints(&m);
    frames(&m);
    proofs(&m);
    directories();
    requests();
    keyfiles();
    signals();
    free(m.env1);
    free(m.env2);
    keten_receipt_proof_buf_clear(&m.proof_stored);
    keten_receipt_proof_buf_clear(&m.proof_refused);
    free(m.lh_politie);
    free(m.lh_belasting);
    keten_receipt_batch_destroy(&m.batch_politie);
    keten_receipt_batch_destroy(&m.batch_belasting);
    for (size_t i = 0; i < LOG_LEAVES; i++) {
        free(m.leaves[i]);
    }
    free(m.note);
    free(m.note3);
    free(m.cosig_line);
    return 0;
}
