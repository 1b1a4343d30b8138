/* audit: keten-audit's modules (audit/). The escaping of everything printed
 * from a log (CSV per RFC 4180, JSON, HTML, plain text) with hostile input;
 * the message index and filters; --by parsing; and the verifier on small
 * logs written here with a real signed directory and real signatures: the
 * accepted log and its reject twins, each found at the right record with the
 * right error (a record that disagrees with its signed header, a msg_id
 * submitted twice, time going back, the wrong directory version, a submit
 * before any directory, another network's anchor, a checkpoint not signed by
 * the broker's log key); receipts (receipted and refused-by-recipient records
 * holding a recipient's ReceiptProof, made here with lib/receipt.h): one
 * signature per batch head, and the reject twins of a changed leaf path, a
 * changed head signature, a refusal logged as receipted, a reason that is not
 * the signed one, a leaf naming another envelope, another recipient or
 * sender than the message's. A rejected record naming another node's
 * message is not shown as that message's. Tampering with the stored tree and records is
 * covered by tests/integration/audit_tamper.sh on a real broker's log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lmdb.h>
#include <sodium.h>

#include "auditdb.h"
#include "tiles.h"
#include "checkpoint.h"
#include "fixture.h"
#include "merkle.h"
#include "pb.h"
#include "receipt.h"
#include "records.h"
#include "render.h"
#include "sigcheck.h"
#include "stats.h"
#include "util.h"
#include "verifier.h"

#define OUT_MAX 4096
#define LOG_MAP (64u << 20)

/* ---- rendering ------------------------------------------------------------ */

typedef void (*render_fn)(FILE *f, const char *s);

/* What fn writes for s, in a static buffer. */
static const char *rendered(render_fn fn, const char *s)
{
    static char out[OUT_MAX];
    FILE *f = fmemopen(out, sizeof out, "w");
    assert_non_null(f);
    fn(f, s);
    fputc('\0', f);
    assert_int_equal(fclose(f), 0);
    return out;
}

static void test_csv_field(void **state)
{
    (void)state;
    assert_string_equal(rendered(render_csv_field, "politie-mn"), "politie-mn");
    assert_string_equal(rendered(render_csv_field, ""), "");
    assert_string_equal(rendered(render_csv_field, "a,b"), "\"a,b\"");
    assert_string_equal(rendered(render_csv_field, "say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_string_equal(rendered(render_csv_field, "two\r\nlines"), "\"two\r\nlines\"");
    assert_string_equal(rendered(render_csv_field, "\""), "\"\"\"\"");
}

static void test_json_string(void **state)
{
    (void)state;
    assert_string_equal(rendered(render_json_string, "woonfraude"), "\"woonfraude\"");
    assert_string_equal(rendered(render_json_string, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_string_equal(
        rendered(render_json_string, "\n\x01\x1f\x7f"), "\"\\u000a\\u0001\\u001f\\u007f\"");
    /* valid UTF-8 kept, invalid bytes replaced */
    assert_string_equal(rendered(render_json_string, "caf\xc3\xa9"), "\"caf\xc3\xa9\"");
    assert_string_equal(rendered(render_json_string, "x\xff y\xc3"), "\"x\\ufffd y\\ufffd\"");
    assert_string_equal(rendered(render_json_string, "\xed\xa0\x80"),
        "\"\\ufffd\\ufffd\\ufffd\""); /* a UTF-16 surrogate is not UTF-8 */
    assert_string_equal(rendered(render_json_string, "\xc0\xaf"), "\"\\ufffd\\ufffd\"");
}

static void test_html_text(void **state)
{
    (void)state;
    assert_string_equal(rendered(render_html_text, "<script>alert('x')</script>"),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
    assert_string_equal(rendered(render_html_text, "a & \"b\""), "a &amp; &quot;b&quot;");
    assert_string_equal(rendered(render_html_text, "\x1b[31m"), "&#xfffd;[31m");
    assert_string_equal(rendered(render_html_text, "\xff\xc3\xa9"), "&#xfffd;\xc3\xa9");
}

static void test_plain(void **state)
{
    (void)state;
    assert_string_equal(rendered(render_plain, "ok\x1b]0;x\x07\n"), "ok?]0;x??");
}

static void test_formats(void **state)
{
    (void)state;
    render_format f;
    assert_int_equal(render_parse_format("text", &f), KETEN_OK);
    assert_int_equal(f, RENDER_TEXT);
    assert_int_equal(render_parse_format("jsonl", &f), KETEN_OK);
    assert_int_equal(f, RENDER_JSONL);
    assert_int_equal(render_parse_format("csv", &f), KETEN_OK);
    assert_int_equal(f, RENDER_CSV);
    assert_int_equal(render_parse_format("CSV", &f), KETEN_ERR_INVALID);
    assert_int_equal(render_parse_format("", &f), KETEN_ERR_INVALID);
    char m[8];
    render_month(0, m);
    assert_string_equal(m, "1970-01");
    render_month(1795000000000ull, m); /* 2026-11-18 */
    assert_string_equal(m, "2026-11");
}

/* ---- --by ----------------------------------------------------------------- */

static void test_stats_by(void **state)
{
    (void)state;
    stats_keys k;
    assert_int_equal(stats_parse_by("pair,category,month", &k), KETEN_OK);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.key[0], STATS_PAIR);
    assert_int_equal(k.key[2], STATS_MONTH);
    assert_int_equal(stats_parse_by("purpose,pair", &k), KETEN_OK);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.key[0], STATS_PURPOSE);
    assert_true(stats_has_key(&k, STATS_PAIR));
    assert_false(stats_has_key(&k, STATS_MONTH));
    assert_int_equal(stats_parse_by("purpose,rule,pair,category,month", &k), KETEN_OK);
    assert_int_equal(k.n, STATS_KEY_COUNT);
    assert_int_equal(k.key[1], STATS_RULE);
    assert_string_equal(stats_key_name(STATS_RULE), "rule");
    assert_int_equal(stats_parse_by("rule,rule", &k), KETEN_ERR_INVALID);
    assert_int_equal(stats_parse_by("rules", &k), KETEN_ERR_INVALID);
    assert_int_equal(stats_parse_by("pair,pair", &k), KETEN_ERR_INVALID);
    assert_int_equal(stats_parse_by("pair,colour", &k), KETEN_ERR_INVALID);
    assert_int_equal(stats_parse_by("", &k), KETEN_ERR_INVALID);
    assert_int_equal(stats_parse_by("pair,", &k), KETEN_ERR_INVALID);
}

/* ---- index and filters ---------------------------------------------------- */

static Keten__AuditRecord *plain_record(uint64_t seq, uint64_t time, int event,
    const uint8_t *msg_id, const char *sender, const char *rcpt, const char *node)
{
    Keten__AuditRecord *r = calloc(1, sizeof *r);
    assert_non_null(r);
    keten__audit_record__init(r);
    r->seq = seq;
    r->time = time;
    r->event = event;
    if (msg_id != NULL) {
        r->msg_id.data = (uint8_t *)msg_id;
        r->msg_id.len = KETEN_MSG_ID_BYTES;
    }
    r->sender = (char *)sender;
    if (rcpt != NULL) {
        r->recipients = calloc(1, sizeof(char *));
        assert_non_null(r->recipients);
        r->recipients[0] = (char *)rcpt;
        r->n_recipients = 1;
    }
    r->node = (char *)node;
    if (event == KETEN__EVENT__EVENT_SUBMITTED) {
        r->category = (char *)"woonfraude";
        r->purpose = (char *)"handhaving";
        r->kind = KETEN__KIND__KIND_SIGNAL;
    }
    return r;
}

static void free_plain(Keten__AuditRecord *r)
{
    free(r->recipients);
    free(r);
}

static void test_index(void **state)
{
    (void)state;
    records_index *idx = records_index_new();
    assert_non_null(idx);
    enum { N = 5000 };
    static uint8_t ids[N][KETEN_MSG_ID_BYTES];
    const char *first_sender = NULL;
    for (uint64_t i = 0; i < N; i++) {
        randombytes_buf(ids[i], KETEN_MSG_ID_BYTES);
        char rcpt[16];
        snprintf(rcpt, sizeof rcpt, "node-%u", (unsigned)(i % 7));
        Keten__AuditRecord *r = plain_record(
            i, 1000 + i, KETEN__EVENT__EVENT_SUBMITTED, ids[i], "gemeente-diemen", rcpt, "");
        uint64_t dup = 0;
        records_msg *m = NULL;
        assert_int_equal(records_index_add(idx, r, &m, &dup), KETEN_OK);
        assert_int_equal(dup, UINT64_MAX);
        assert_non_null(m);
        if (i == 0) {
            first_sender = m->sender;
        }
        free_plain(r);
    }
    assert_int_equal(records_index_count(idx), N);
    /* Interned strings stay where they were while the index grows. */
    assert_ptr_equal(records_index_find(idx, ids[N - 1])->sender, first_sender);
    for (size_t i = 0; i < N; i += 97) {
        const records_msg *m = records_index_find(idx, ids[i]);
        assert_non_null(m);
        assert_int_equal(m->seq, i);
        char want[16];
        snprintf(want, sizeof want, "node-%u", (unsigned)(i % 7));
        assert_string_equal(records_msg_recipient(idx, m, 0), want);
        assert_true(records_msg_has_recipient(idx, m, want));
        assert_false(records_msg_has_recipient(idx, m, "node-99"));
    }
    uint8_t other[KETEN_MSG_ID_BYTES] = { 0 };
    assert_null(records_index_find(idx, other));
    /* The same msg_id again: reported with the first record's seq. */
    Keten__AuditRecord *again
        = plain_record(N + 1, 9999, KETEN__EVENT__EVENT_SUBMITTED, ids[42], "politie-mn", "x", "");
    uint64_t dup = 0;
    assert_int_equal(records_index_add(idx, again, NULL, &dup), KETEN_OK);
    assert_int_equal(dup, 42);
    assert_int_equal(records_index_count(idx), N);
    free_plain(again);
    /* A malformed msg_id is refused. */
    Keten__AuditRecord *bad
        = plain_record(0, 0, KETEN__EVENT__EVENT_SUBMITTED, ids[1], "a", "b", "");
    bad->msg_id.len = 3;
    assert_int_equal(records_index_add(idx, bad, NULL, &dup), KETEN_ERR_MALFORMED);
    free_plain(bad);
    records_index_destroy(&idx);
    assert_null(idx);
    records_index_destroy(&idx); /* NULL is fine */
}

static void test_filters(void **state)
{
    (void)state;
    records_index *idx = records_index_new();
    assert_non_null(idx);
    uint8_t id[KETEN_MSG_ID_BYTES];
    randombytes_buf(id, sizeof id);
    Keten__AuditRecord *sub = plain_record(
        3, 1000, KETEN__EVENT__EVENT_SUBMITTED, id, "gemeente-diemen", "politie-mn", "");
    uint64_t dup = 0;
    records_msg *m = NULL;
    assert_int_equal(records_index_add(idx, sub, &m, &dup), KETEN_OK);
    Keten__AuditRecord *del = plain_record(
        4, 2000, KETEN__EVENT__EVENT_DELIVERED, id, "gemeente-diemen", NULL, "politie-mn");
    records_filter f;
    memset(&f, 0, sizeof f);
    assert_true(records_filter_match(&f, idx, del, m));
    /* time: from inclusive, to exclusive */
    f.has_from = true;
    f.from_ms = 2000;
    assert_true(records_filter_match(&f, idx, del, m));
    assert_false(records_filter_match(&f, idx, sub, m));
    f.has_to = true;
    f.to_ms = 2000;
    assert_false(records_filter_match(&f, idx, del, m));
    memset(&f, 0, sizeof f);
    /* a delivery carries its message's category and purpose */
    f.category = "woonfraude";
    f.purpose = "handhaving";
    assert_true(records_filter_match(&f, idx, del, m));
    assert_false(records_filter_match(&f, idx, del, NULL));
    f.category = "drugs";
    assert_false(records_filter_match(&f, idx, del, m));
    memset(&f, 0, sizeof f);
    f.node = "politie-mn";
    assert_true(records_filter_match(&f, idx, sub, m));
    assert_true(records_filter_match(&f, idx, del, m));
    f.node = "woonstad";
    assert_false(records_filter_match(&f, idx, del, m));
    memset(&f, 0, sizeof f);
    f.has_msg = true;
    memcpy(f.msg_id, id, sizeof id);
    assert_true(records_filter_match(&f, idx, del, m));
    f.msg_id[0] ^= 1;
    assert_false(records_filter_match(&f, idx, del, m));
    assert_string_equal(records_category(del, m), "woonfraude");
    assert_int_equal(records_kind(del, m), KETEN__KIND__KIND_SIGNAL);
    assert_string_equal(
        records_evidence_name(records_event_evidence(KETEN__EVENT__EVENT_DELIVERED)),
        "broker-claim");
    assert_string_equal(
        records_evidence_name(records_event_evidence(KETEN__EVENT__EVENT_RECEIPTED)),
        "recipient-signature");
    assert_string_equal(records_event_name(99), "unknown");
    assert_string_equal(records_reason_name(KETEN__REASON__REASON_POLICY), "policy");
    free_plain(sub);
    free_plain(del);
    records_index_destroy(&idx);
}

/* ---- the verifier on small logs ------------------------------------------- */

typedef enum twist {
    TWIST_NONE = 0,
    TWIST_CATEGORY, /* record category differs from the header's */
    TWIST_RECIPIENT, /* record recipient differs from the header's */
    TWIST_SEQ, /* seq is not the leaf index */
    TWIST_EARLIER, /* time before the previous record */
    TWIST_DIRVERSION, /* names directory version 2 */
    TWIST_NO_DIRECTORY, /* names directory version 0: none installed */
    TWIST_SIGNATURE, /* signed by a key that is no one's */
} twist;

typedef struct logw {
    fixture *fx;
    MDB_env *env;
    MDB_txn *txn;
    keten_merkle_log *log;
    MDB_dbi dirs, cps;
    char path[PATH_MAX];
    uint64_t n, t0;
    uint8_t last_id[KETEN_MSG_ID_BYTES]; /* of the last submitted record */
    uint8_t last_env[KETEN_HASH_BYTES]; /* its envelope hash */
} logw;

static void logw_open(logw *w, fixture *fx, const char *name)
{
    memset(w, 0, sizeof *w);
    w->fx = fx;
    fixture_path(fx, name, w->path);
    assert_int_equal(keten_mkdir(w->path, 0700), KETEN_OK);
    assert_int_equal(mdb_env_create(&w->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(w->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(w->env, LOG_MAP), 0);
    assert_int_equal(mdb_env_open(w->env, w->path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(w->env, NULL, 0, &w->txn), 0);
    assert_int_equal(keten_merkle_log_open(w->txn, "audit-", &w->log), KETEN_OK);
    assert_int_equal(mdb_dbi_open(w->txn, "directories", MDB_CREATE, &w->dirs), 0);
    assert_int_equal(mdb_dbi_open(w->txn, "checkpoints", MDB_CREATE, &w->cps), 0);
    w->t0 = keten_now_ms();
}

static void logw_put(logw *w, const Keten__AuditRecord *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(keten_pb_pack(&r->base, &buf, &len), KETEN_OK);
    assert_int_equal(keten_merkle_log_append(w->log, w->txn, buf, len, NULL), KETEN_OK);
    free(buf);
    w->n++;
}

static void logw_directory(logw *w)
{
    size_t len = 0;
    const uint8_t *bytes = keten_directory_bytes(w->fx->directory, &len);
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = w->n;
    r.time = w->t0 + w->n;
    r.event = KETEN__EVENT__EVENT_DIRECTORY_INSTALLED;
    r.directory.data = (uint8_t *)bytes;
    r.directory.len = len;
    r.directory_version = keten_directory_version(w->fx->directory);
    logw_put(w, &r);
    uint8_t key[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
    MDB_val k = { sizeof key, key }, v = { len, (void *)bytes };
    assert_int_equal(mdb_put(w->txn, w->dirs, &k, &v, 0), 0);
}

/* A submitted record from gemeente-diemen to politie-mn; msg_id NULL: new. */
static void logw_submitted(logw *w, twist tw, const uint8_t *reuse_id)
{
    keten_identity *sender = fixture_node(w->fx, "gemeente-diemen");
    uint8_t msg_id[KETEN_MSG_ID_BYTES], nonce[KETEN_NONCE_BYTES], h32[KETEN_HASH_BYTES],
        sig[KETEN_SIG_BYTES];
    if (reuse_id != NULL) {
        memcpy(msg_id, reuse_id, sizeof msg_id);
    } else {
        randombytes_buf(msg_id, sizeof msg_id);
    }
    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(h32, sizeof h32);
    uint64_t t = w->t0 + w->n * 10;
    char *rcpt[1] = { (char *)"politie-mn" };
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)keten_directory_network(w->fx->directory);
    h.msg_id = (ProtobufCBinaryData) { sizeof msg_id, msg_id };
    h.sender = sender->id;
    h.n_recipients = 1;
    h.recipients = rcpt;
    h.created_at = t;
    h.expires_at = t + 60000;
    h.kind = KETEN__KIND__KIND_SIGNAL;
    h.category = (char *)"woonfraude";
    h.purpose = (char *)"handhaving";
    h.nonce = (ProtobufCBinaryData) { sizeof nonce, nonce };
    h.key_commitment = (ProtobufCBinaryData) { sizeof h32, h32 };
    h.keys_hash = (ProtobufCBinaryData) { sizeof h32, h32 };
    h.padded_len = 1024;
    uint8_t *hdr = NULL;
    size_t hdr_len = 0;
    assert_int_equal(keten_pb_pack(&h.base, &hdr, &hdr_len), KETEN_OK);
    uint8_t msg[1024];
    size_t label = strlen(KETEN_LABEL_ENVELOPE);
    assert_true(label + hdr_len + sizeof h32 <= sizeof msg);
    memcpy(msg, KETEN_LABEL_ENVELOPE, label);
    memcpy(msg + label, hdr, hdr_len);
    memcpy(msg + label + hdr_len, h32, sizeof h32);
    uint8_t stranger_pk[KETEN_SIGN_PK_BYTES], stranger_sk[KETEN_SIGN_SK_BYTES];
    crypto_sign_keypair(stranger_pk, stranger_sk);
    crypto_sign_detached(sig, NULL, msg, label + hdr_len + sizeof h32,
        tw == TWIST_SIGNATURE ? stranger_sk : sender->sign_sk);
    sodium_memzero(stranger_sk, sizeof stranger_sk);
    char *rec_rcpt[1] = { (char *)(tw == TWIST_RECIPIENT ? "woonstad" : "politie-mn") };
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = tw == TWIST_SEQ ? w->n + 1 : w->n;
    r.time = tw == TWIST_EARLIER ? w->t0 : t;
    r.event = KETEN__EVENT__EVENT_SUBMITTED;
    r.msg_id = h.msg_id;
    r.sender = sender->id;
    r.n_recipients = 1;
    r.recipients = rec_rcpt;
    r.kind = h.kind;
    r.category = (char *)(tw == TWIST_CATEGORY ? "drugs" : "woonfraude");
    r.purpose = (char *)"handhaving";
    r.rule = 1;
    r.header = (ProtobufCBinaryData) { hdr_len, hdr };
    r.ciphertext_hash = (ProtobufCBinaryData) { sizeof h32, h32 };
    r.signature = (ProtobufCBinaryData) { sizeof sig, sig };
    r.size_bucket = 1024;
    r.directory_version = tw == TWIST_DIRVERSION ? 2 : tw == TWIST_NO_DIRECTORY ? 0 : 1;
    r.envelope_hash = (ProtobufCBinaryData) { sizeof h32, h32 };
    logw_put(w, &r);
    free(hdr);
    memcpy(w->last_id, msg_id, sizeof msg_id);
    memcpy(w->last_env, h32, sizeof h32);
}

/* What is wrong with one receipt record (receipted / refused-by-recipient). */
typedef enum rtwist {
    RT_NONE = 0,
    RT_PATH, /* one byte of the leaf's audit path changed */
    RT_SIGNATURE, /* one byte of the head's signature changed */
    RT_OUTCOME, /* a refusal logged as receipted (reason cleared) */
    RT_ENVELOPE, /* the recipient signed a leaf naming another envelope hash */
    RT_NODE, /* the batch is belastingdienst's (the record names politie-mn) */
    RT_REASON, /* the record's reason is not the signed one */
    RT_SENDER, /* the record names another sender than the submitted record */
} rtwist;

/* One receipt batch by politie-mn answering the messages ids[i] (envelope
 * hashes envs[i]) with outcomes[i] (REASON_NONE: stored, else refused with
 * that reason); one record per leaf, twist tw applied to leaf `at`. */
static void logw_receipts(logw *w, size_t n, uint8_t ids[][KETEN_MSG_ID_BYTES],
    uint8_t envs[][KETEN_HASH_BYTES], const Keten__Reason *reasons, rtwist tw, size_t at)
{
    const char *signer = tw == RT_NODE ? "belastingdienst" : "politie-mn";
    keten_identity *rcpt = fixture_node(w->fx, signer);
    const Keten__NodeCert *cert = keten_directory_find_id(w->fx->directory, signer);
    assert_non_null(cert);
    keten_receipt_item items[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        memcpy(items[i].msg_id, ids[i], KETEN_MSG_ID_BYTES);
        memcpy(items[i].envelope_hash, envs[i], KETEN_HASH_BYTES);
        if (tw == RT_ENVELOPE && i == at) {
            items[i].envelope_hash[0] ^= 0x01;
        }
        items[i].outcome = reasons[i] == KETEN__REASON__REASON_NONE
            ? KETEN__OUTCOME__OUTCOME_STORED
            : KETEN__OUTCOME__OUTCOME_REFUSED;
        items[i].reason = reasons[i];
    }
    const char *network = keten_directory_network(w->fx->directory);
    keten_receipt_batch *b = NULL;
    assert_int_equal(
        keten_receipt_batch_new(rcpt, network, cert->serial, w->t0 + w->n * 10, items, n, &b),
        KETEN_OK);
    Keten__ReceiptBatchHead *head = NULL;
    keten_hash *hashes = NULL;
    assert_int_equal(keten_receipt_batch_verify(cert, network, &b->msg, &head, &hashes), KETEN_OK);
    for (size_t i = 0; i < n; i++) {
        keten_receipt_proof_buf buf;
        assert_int_equal(keten_receipt_proof_build(&b->msg, (const keten_hash *)hashes, i, &buf), KETEN_OK);
        Keten__ReceiptProof proof = buf.msg;
        uint8_t sig[KETEN_SIG_BYTES];
        memcpy(sig, proof.signature.data, sizeof sig);
        proof.signature.data = sig;
        bool refused = reasons[i] != KETEN__REASON__REASON_NONE;
        char *rec_rcpt[1] = { (char *)"politie-mn" };
        Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
        r.seq = w->n;
        r.time = w->t0 + w->n * 10;
        r.event = refused ? KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT
                          : KETEN__EVENT__EVENT_RECEIPTED;
        r.msg_id = (ProtobufCBinaryData) { KETEN_MSG_ID_BYTES, ids[i] };
        r.sender = (char *)"gemeente-diemen";
        r.node = (char *)"politie-mn";
        r.n_recipients = 1;
        r.recipients = rec_rcpt;
        r.reason = reasons[i];
        r.receipt = &proof;
        r.directory_version = 1;
        if (i == at) {
            switch (tw) {
            case RT_PATH:
                assert_true(proof.n_path > 0);
                buf.path[0][5] ^= 0x01;
                break;
            case RT_SIGNATURE:
                sig[7] ^= 0x01;
                break;
            case RT_OUTCOME:
                r.event = KETEN__EVENT__EVENT_RECEIPTED;
                r.reason = KETEN__REASON__REASON_NONE;
                break;
            case RT_REASON:
                r.reason = KETEN__REASON__REASON_POLICY;
                break;
            case RT_SENDER:
                r.sender = (char *)"belastingdienst";
                break;
            default:
                break;
            }
        }
        logw_put(w, &r);
        keten_receipt_proof_buf_clear(&buf);
    }
    free(hashes);
    keten_pb_free((ProtobufCMessage **)(void *)&head);
    keten_receipt_batch_destroy(&b);
}

/* A checkpoint of the whole log signed with sk under the broker's name. */
static void logw_checkpoint(logw *w, const uint8_t sk[static KETEN_SIGN_SK_BYTES])
{
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    snprintf(cp.origin, sizeof cp.origin, "keten/%s", keten_directory_network(w->fx->directory));
    cp.size = w->n;
    cp.dir_version = keten_directory_version(w->fx->directory);
    memcpy(cp.dir_hash, keten_directory_hash(w->fx->directory), KETEN_HASH_BYTES);
    assert_int_equal(keten_merkle_log_root(w->log, w->txn, w->n, cp.root), KETEN_OK);
    char *note = NULL;
    assert_int_equal(keten_checkpoint_sign(&cp, "broker", sk, &note), KETEN_OK);
    uint8_t key[8];
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)(w->n >> (56 - 8 * i));
    }
    MDB_val k = { sizeof key, key }, v = { strlen(note), note };
    assert_int_equal(mdb_put(w->txn, w->cps, &k, &v, 0), 0);
    free(note);
}

static void logw_close(logw *w)
{
    assert_int_equal(mdb_txn_commit(w->txn), 0);
    keten_merkle_log_destroy(&w->log);
    mdb_env_close(w->env);
}

static const char *const specs[] = { "gemeente-diemen:municipality", "politie-mn:police",
    "belastingdienst:tax", "broker:broker", NULL };

/* Verify the log at path against anchor; returns the result (static). */
static const verifier_result *verify(const char *path, const Keten__Anchor *anchor)
{
    static verifier_result res;
    auditdb *db = NULL;
    assert_int_equal(auditdb_open_env(path, &db), KETEN_OK);
    assert_false(db->is_export); /* an LMDB log made here: exported, then read as tiles */
    verifier_opts o = { .anchor = anchor, .threads = 2 };
    assert_int_equal(verifier_run(db, &o, &res), KETEN_OK);
    auditdb_close(&db);
    return &res;
}

static void test_verify_accepts(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "good");
    logw_directory(&w);
    for (int i = 0; i < 40; i++) {
        logw_submitted(&w, TWIST_NONE, NULL);
        if (i == 19) {
            logw_checkpoint(&w, fixture_node(fx, "broker")->log_sk);
        }
    }
    logw_checkpoint(&w, fixture_node(fx, "broker")->log_sk);
    logw_close(&w);
    const verifier_result *r = verify(w.path, fx->anchor);
    assert_true(r->ok);
    assert_int_equal(r->records, 41);
    assert_int_equal(r->sender_signatures, 40);
    assert_int_equal(r->checkpoints, 2);
    assert_int_equal(r->checkpoints_witnessed, 0);
    assert_int_equal(r->latest_checkpoint, 41);
    assert_int_equal(r->directory_versions, 1);
    assert_int_equal(r->events[KETEN__EVENT__EVENT_SUBMITTED], 40);
    assert_int_equal(r->external, 0);
    fixture_destroy(&fx);
}

/* A rejected record as an older broker wrote it: msg_id as the refused
 * envelope claimed it (NULL: none). */
static void logw_rejected(logw *w, const uint8_t *msg_id, const char *node, Keten__Reason reason)
{
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = w->n;
    r.time = w->t0 + w->n;
    r.event = KETEN__EVENT__EVENT_REJECTED;
    if (msg_id != NULL) {
        r.msg_id.data = (uint8_t *)msg_id;
        r.msg_id.len = KETEN_MSG_ID_BYTES;
    }
    r.sender = (char *)node;
    r.reason = reason;
    logw_put(w, &r);
}

typedef struct seen_rec {
    int event;
    char sender[32];
    bool has_msg_id, has_msg;
} seen_rec;

typedef struct seen_log {
    seen_rec v[16];
    size_t n;
} seen_log;

static keten_err collect(
    void *ctx, const Keten__AuditRecord *rec, const records_msg *m, const uint8_t *leaf, size_t len)
{
    (void)leaf;
    (void)len;
    seen_log *s = ctx;
    assert_true(s->n < 16);
    seen_rec *x = &s->v[s->n++];
    x->event = (int)rec->event;
    snprintf(x->sender, sizeof x->sender, "%s", rec->sender);
    x->has_msg_id = rec->msg_id.len == KETEN_MSG_ID_BYTES;
    x->has_msg = m != NULL;
    return KETEN_OK;
}

/* The tools never show a node's refused attempt as part of another party's
 * message: in a log whose rejected records carry the msg_id a refused
 * envelope claimed (as older brokers wrote them), politie-mn's rejections
 * naming gemeente-diemen's accepted msg_id reach replay, stats and prove
 * without msg_id and without message. Twins: gemeente-diemen's own refused
 * resubmission keeps both; a rejection naming a msg_id that no message was
 * accepted under keeps its msg_id. */
static void test_rejected_attribution(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "attrib");
    logw_directory(&w);
    logw_submitted(&w, TWIST_NONE, NULL);
    uint8_t id[KETEN_MSG_ID_BYTES], never[KETEN_MSG_ID_BYTES];
    memcpy(id, w.last_id, sizeof id);
    randombytes_buf(never, sizeof never);
    logw_rejected(&w, id, "politie-mn", KETEN__REASON__REASON_BAD_SIGNATURE);
    logw_rejected(&w, id, "politie-mn", KETEN__REASON__REASON_SENDER_MISMATCH);
    logw_rejected(&w, id, "gemeente-diemen", KETEN__REASON__REASON_DUPLICATE);
    logw_rejected(&w, never, "politie-mn", KETEN__REASON__REASON_POLICY);
    logw_rejected(&w, NULL, "belastingdienst", KETEN__REASON__REASON_MALFORMED);
    logw_close(&w);

    auditdb *db = NULL;
    assert_int_equal(auditdb_open_env(w.path, &db), KETEN_OK);
    records_index *idx = records_index_new();
    assert_non_null(idx);
    seen_log s = { .n = 0 };
    assert_int_equal(records_scan(db, idx, collect, &s), KETEN_OK);
    assert_int_equal(s.n, 7);
    assert_int_equal(s.v[1].event, KETEN__EVENT__EVENT_SUBMITTED);
    assert_true(s.v[1].has_msg_id && s.v[1].has_msg);
    for (size_t i = 2; i <= 3; i++) { /* politie-mn's, naming gemeente-diemen's message */
        assert_int_equal(s.v[i].event, KETEN__EVENT__EVENT_REJECTED);
        assert_string_equal(s.v[i].sender, "politie-mn");
        assert_false(s.v[i].has_msg_id);
        assert_false(s.v[i].has_msg);
    }
    assert_string_equal(s.v[4].sender, "gemeente-diemen"); /* its own: kept */
    assert_true(s.v[4].has_msg_id && s.v[4].has_msg);
    assert_true(s.v[5].has_msg_id); /* a msg_id nothing was accepted under: kept */
    assert_false(s.v[5].has_msg);
    assert_false(s.v[6].has_msg_id);
    records_index_destroy(&idx);
    auditdb_close(&db);
    fixture_destroy(&fx);
}

/* One twisted record at seq 6 of a 12-record log: found there, with err. */
static void twisted(twist tw, keten_err err)
{
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "twisted");
    logw_directory(&w);
    for (int i = 1; i < 12; i++) {
        logw_submitted(&w, i == 6 ? tw : TWIST_NONE, NULL);
    }
    logw_close(&w);
    const verifier_result *r = verify(w.path, fx->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 6);
    assert_int_equal(r->failure.err, err);
    assert_non_null(strstr(r->failure.what, "record 6"));
    fixture_destroy(&fx);
}

static void test_verify_header_mismatch(void **state)
{
    (void)state;
    twisted(TWIST_CATEGORY, KETEN_ERR_MISMATCH);
    twisted(TWIST_RECIPIENT, KETEN_ERR_MISMATCH);
}

static void test_verify_order(void **state)
{
    (void)state;
    twisted(TWIST_SEQ, KETEN_ERR_INCONSISTENT);
    twisted(TWIST_EARLIER, KETEN_ERR_INCONSISTENT);
    twisted(TWIST_DIRVERSION, KETEN_ERR_INCONSISTENT);
}

static void test_verify_foreign_signature(void **state)
{
    (void)state;
    twisted(TWIST_SIGNATURE, KETEN_ERR_BAD_SIGNATURE);
}

static void test_verify_duplicate(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "dup");
    logw_directory(&w);
    uint8_t id[KETEN_MSG_ID_BYTES];
    randombytes_buf(id, sizeof id);
    logw_submitted(&w, TWIST_NONE, id);
    logw_submitted(&w, TWIST_NONE, NULL);
    logw_submitted(&w, TWIST_NONE, id);
    logw_close(&w);
    const verifier_result *r = verify(w.path, fx->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 3);
    assert_int_equal(r->failure.err, KETEN_ERR_REPLAY);
    assert_non_null(strstr(r->failure.what, "already submitted at record 1"));
    fixture_destroy(&fx);
}

/* A submitted record in a log that installed no directory: refused at
 * record 0, whether it names the version its sender had (1: not the one in
 * force) or no version at all (nothing to check its signature against). */
/* A broker-claimed record for the last submitted message (sent by
 * gemeente-diemen to politie-mn, expiring 60 s after its creation). */
static void logw_claim(
    logw *w, Keten__Event event, uint64_t time, Keten__Reason reason, uint32_t rule)
{
    char *rcpt[1] = { (char *)"politie-mn" };
    Keten__AuditRecord r = KETEN__AUDIT_RECORD__INIT;
    r.seq = w->n;
    r.time = time;
    r.event = event;
    r.msg_id = (ProtobufCBinaryData) { KETEN_MSG_ID_BYTES, w->last_id };
    r.sender = (char *)"gemeente-diemen";
    if (event == KETEN__EVENT__EVENT_EXPIRED) {
        r.n_recipients = 1;
        r.recipients = rcpt;
    }
    r.reason = reason;
    r.rule = rule;
    r.directory_version = 1;
    logw_put(w, &r);
}

/* The log of a submitted message and one claim after it; verify's result. */
static const verifier_result *claim_log(
    fixture *fx, Keten__Event event, uint64_t at, Keten__Reason reason, uint32_t rule)
{
    static unsigned n;
    char name[32];
    snprintf(name, sizeof name, "claim%u", n++); /* a log of its own */
    logw w;
    logw_open(&w, fx, name);
    logw_directory(&w);
    logw_submitted(&w, TWIST_NONE, NULL); /* created t0 + 10, expires t0 + 60010 */
    logw_claim(&w, event, w.t0 + at, reason, rule);
    logw_close(&w);
    return verify(w.path, fx->anchor);
}

/* An expiry dated before the message's signed expires_at (the broker
 * expires a message only once its clock has passed it), and a rejected
 * record naming a policy rule for a reason that is not the policy's: each
 * found at its record. Twins: the expiry dated at expires_at, a rule with
 * a refusal by the policy. */
static void test_verify_broker_claims(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    const verifier_result *r
        = claim_log(fx, KETEN__EVENT__EVENT_EXPIRED, 20, KETEN__REASON__REASON_NONE, 0);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 2);
    assert_non_null(strstr(r->failure.what, "before the message expires at"));
    r = claim_log(fx, KETEN__EVENT__EVENT_EXPIRED, 60010, KETEN__REASON__REASON_NONE, 0);
    assert_true(r->ok);
    r = claim_log(fx, KETEN__EVENT__EVENT_REJECTED, 20, KETEN__REASON__REASON_MALFORMED, 3);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 2);
    assert_non_null(strstr(r->failure.what, "names policy rule 3"));
    r = claim_log(fx, KETEN__EVENT__EVENT_REJECTED, 20, KETEN__REASON__REASON_POLICY, 3);
    assert_true(r->ok);
    r = claim_log(fx, KETEN__EVENT__EVENT_REJECTED, 20, KETEN__REASON__REASON_DUPLICATE, 0);
    assert_true(r->ok);
    fixture_destroy(&fx);
}

static void test_verify_no_directory(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "nodir");
    logw_submitted(&w, TWIST_NONE, NULL);
    logw_close(&w);
    const verifier_result *r = verify(w.path, fx->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 0);
    assert_int_equal(r->failure.err, KETEN_ERR_INCONSISTENT);
    assert_non_null(
        strstr(r->failure.what, "record 0 names directory version 1 but version 0 was in force"));

    logw_open(&w, fx, "nodir0");
    logw_submitted(&w, TWIST_NO_DIRECTORY, NULL);
    logw_close(&w);
    r = verify(w.path, fx->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 0);
    assert_int_equal(r->failure.err, KETEN_ERR_INCONSISTENT);
    assert_non_null(
        strstr(r->failure.what, "record 0 (submitted) comes before any directory was installed"));
    fixture_destroy(&fx);
}

static void test_verify_other_anchor(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    fixture *other = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "anchor");
    logw_directory(&w);
    logw_submitted(&w, TWIST_NONE, NULL);
    logw_close(&w);
    const verifier_result *r = verify(w.path, other->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 0);
    assert_non_null(strstr(r->failure.what, "does not verify against the anchor"));
    fixture_destroy(&other);
    fixture_destroy(&fx);
}

static void test_verify_checkpoint_key(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "cpkey");
    logw_directory(&w);
    for (int i = 0; i < 5; i++) {
        logw_submitted(&w, TWIST_NONE, NULL);
    }
    /* The broker's node signing key is not its log key. */
    logw_checkpoint(&w, fixture_node(fx, "broker")->sign_sk);
    logw_submitted(&w, TWIST_NONE, NULL);
    logw_close(&w);
    const verifier_result *r = verify(w.path, fx->anchor);
    assert_false(r->ok);
    assert_int_equal(r->failure.seq, 5);
    assert_int_equal(r->failure.err, KETEN_ERR_BAD_SIGNATURE);
    fixture_destroy(&fx);
}

/* ---- receipts: receipted and refused-by-recipient records ----------------- */

#define RECEIPT_MSGS 4

/* A log of RECEIPT_MSGS submitted messages to politie-mn, answered in two
 * batches: leaves 0..2 in one (stored, refused undecryptable, stored), 3
 * alone (refused invalid-signal); twist tw on message `at`. The twisted
 * record is record at + RECEIPT_MSGS + 1 (after the directory and the
 * submits). */
static const verifier_result *receipt_log(fixture *fx, rtwist tw, size_t at, logw *w)
{
    static const Keten__Reason reasons[RECEIPT_MSGS] = { KETEN__REASON__REASON_NONE,
        KETEN__REASON__REASON_UNDECRYPTABLE, KETEN__REASON__REASON_NONE,
        KETEN__REASON__REASON_INVALID_SIGNAL };
    uint8_t ids[RECEIPT_MSGS][KETEN_MSG_ID_BYTES], envs[RECEIPT_MSGS][KETEN_HASH_BYTES];
    logw_open(w, fx, "receipts");
    logw_directory(w);
    for (size_t i = 0; i < RECEIPT_MSGS; i++) {
        logw_submitted(w, TWIST_NONE, NULL);
        memcpy(ids[i], w->last_id, KETEN_MSG_ID_BYTES);
        memcpy(envs[i], w->last_env, KETEN_HASH_BYTES);
    }
    logw_receipts(w, 3, ids, envs, reasons, at < 3 ? tw : RT_NONE, at);
    logw_receipts(w, 1, ids + 3, envs + 3, reasons + 3, at == 3 ? tw : RT_NONE, 0);
    logw_checkpoint(w, fixture_node(fx, "broker")->log_sk);
    logw_close(w);
    return verify(w->path, fx->anchor);
}

static void test_verify_receipts_accepts(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    const verifier_result *r = receipt_log(fx, RT_NONE, 0, &w);
    assert_true(r->ok);
    assert_int_equal(r->records, 1 + 2 * RECEIPT_MSGS);
    assert_int_equal(r->events[KETEN__EVENT__EVENT_RECEIPTED], 2);
    assert_int_equal(r->events[KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT], 2);
    assert_int_equal(r->receipts, 4);
    /* one signature per batch head, however many records it answered */
    assert_int_equal(r->receipt_signatures, 2);
    fixture_destroy(&fx);
}

/* The reject twin of each: found at the twisted record, with err and what. */
static void receipt_twisted(rtwist tw, size_t at, keten_err err, const char *what)
{
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    const verifier_result *r = receipt_log(fx, tw, at, &w);
    uint64_t seq = 1 + RECEIPT_MSGS + at;
    char rec[32];
    snprintf(rec, sizeof rec, "record %llu ", (unsigned long long)seq);
    assert_false(r->ok);
    if (r->failure.seq != seq || r->failure.err != err || strstr(r->failure.what, what) == NULL) {
        print_error("twist %d: failed at %llu (%s): %s\n", (int)tw,
            (unsigned long long)r->failure.seq, keten_err_str(r->failure.err), r->failure.what);
    }
    assert_int_equal(r->failure.seq, seq);
    assert_int_equal(r->failure.err, err);
    assert_non_null(strstr(r->failure.what, rec));
    assert_non_null(strstr(r->failure.what, what));
    fixture_destroy(&fx);
}

static void test_verify_receipt_path(void **state)
{
    (void)state;
    receipt_twisted(RT_PATH, 1, KETEN_ERR_INCONSISTENT, "do not lead to the root");
}

static void test_verify_receipt_signature(void **state)
{
    (void)state;
    /* the head verified (and kept) at records 0 and 1 with its good signature
     * does not let the same head with another signature through */
    receipt_twisted(RT_SIGNATURE, 2, KETEN_ERR_BAD_SIGNATURE, "does not verify");
    receipt_twisted(RT_SIGNATURE, 0, KETEN_ERR_BAD_SIGNATURE, "does not verify");
    receipt_twisted(RT_SIGNATURE, 3, KETEN_ERR_BAD_SIGNATURE, "does not verify");
}

static void test_verify_receipt_outcome(void **state)
{
    (void)state;
    receipt_twisted(RT_OUTCOME, 1, KETEN_ERR_MISMATCH, "signed outcome is 'refused'");
    receipt_twisted(RT_OUTCOME, 3, KETEN_ERR_MISMATCH, "signed outcome is 'refused'");
    receipt_twisted(RT_REASON, 3, KETEN_ERR_MISMATCH, "not the recipient's signed reason");
    receipt_twisted(RT_REASON, 0, KETEN_ERR_MISMATCH, "not the recipient's signed reason");
}

static void test_verify_receipt_envelope(void **state)
{
    (void)state;
    receipt_twisted(RT_ENVELOPE, 2, KETEN_ERR_MISMATCH, "another envelope hash");
    receipt_twisted(RT_ENVELOPE, 3, KETEN_ERR_MISMATCH, "another envelope hash");
}

static void test_verify_receipt_parties(void **state)
{
    (void)state;
    receipt_twisted(RT_NODE, 0, KETEN_ERR_MISMATCH,
        "the receipt's head is for recipient 'belastingdienst', the record names 'politie-mn'");
    receipt_twisted(RT_SENDER, 1, KETEN_ERR_MISMATCH, "came from 'belastingdienst'");
}

/* The export (tiles.h): a leaf of 65535 bytes or more is written with the
 * long length (0xffff, then a uint32) and read back intact; 300 leaves make
 * a full tile, a level-1 tile and partial ones; the root and inclusion
 * proofs cut from the tiles equal the log's; a bundle with a byte added
 * after its last record is refused, naming the bundle. */
static void test_export_tiles(void **state)
{
    (void)state;
    fixture *fx = fixture_new(3, 2, specs);
    logw w;
    logw_open(&w, fx, "tiles");
    enum { N = 300, BIG = 70000, BIG_AT = 5 };
    uint8_t *big = calloc(1, BIG);
    assert_non_null(big);
    for (size_t i = 0; i < BIG; i++) {
        big[i] = (uint8_t)(i * 7);
    }
    for (uint64_t i = 0; i < N; i++) {
        uint8_t small[16];
        memset(small, (int)i, sizeof small);
        const uint8_t *leaf = i == BIG_AT ? big : small;
        size_t len = i == BIG_AT ? BIG : (size_t)(i % sizeof small);
        assert_int_equal(keten_merkle_log_append(w.log, w.txn, leaf, len, NULL), KETEN_OK);
    }
    keten_hash want_root;
    assert_int_equal(keten_merkle_log_root(w.log, w.txn, N, want_root), KETEN_OK);
    keten_hash want_path[KETEN_MERKLE_MAX_PROOF];
    size_t want_len = 0;
    assert_int_equal(
        keten_merkle_log_inclusion_proof(w.log, w.txn, 260, 290, want_path, &want_len), KETEN_OK);
    logw_close(&w);

    auditdb *db = NULL;
    assert_int_equal(auditdb_open_env(w.path, &db), KETEN_OK);
    assert_int_equal(db->size, N);
    tiles_reader *r = NULL;
    assert_int_equal(tiles_reader_new(db->t, &r), KETEN_OK);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t at = 0;
        const uint8_t *leaf = NULL;
        size_t len = 0;
        bool end = true;
        assert_int_equal(tiles_reader_next(r, &at, &leaf, &len, &end), KETEN_OK);
        assert_false(end);
        assert_int_equal(at, i);
        if (i == BIG_AT) {
            assert_int_equal(len, BIG);
            assert_memory_equal(leaf, big, BIG);
        } else {
            assert_int_equal(len, i % 16);
        }
    }
    bool end = false;
    uint64_t at = 0;
    const uint8_t *leaf = NULL;
    size_t len = 0;
    assert_int_equal(tiles_reader_next(r, &at, &leaf, &len, &end), KETEN_OK);
    assert_true(end);
    tiles_reader_destroy(&r);
    keten_hash root;
    assert_int_equal(tiles_root(db->t, N, root), KETEN_OK);
    assert_memory_equal(root, want_root, KETEN_HASH_BYTES);
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    size_t plen = 0;
    assert_int_equal(tiles_inclusion_proof(db->t, 260, 290, path, &plen), KETEN_OK);
    assert_int_equal(plen, want_len);
    assert_memory_equal(path, want_path, plen * KETEN_HASH_BYTES);

    /* The files: the long form in bundle 000, a full level-0 tile, a level-1
     * tile of one hash, the partial tiles of 300 records. */
    char p[PATH_MAX * 2];
    uint8_t *buf = NULL;
    size_t blen = 0;
    snprintf(p, sizeof p, "%s/export/tile/entries/000", db->tmp);
    assert_int_equal(keten_file_read(p, 1u << 20, &buf, &blen), KETEN_OK);
    size_t off = 0;
    for (size_t i = 0; i < BIG_AT; i++) {
        off += 2 + i % 16;
    }
    static const uint8_t long_len[] = { 0xff, 0xff, 0x00, 0x01, 0x11, 0x70 };
    assert_memory_equal(buf + off, long_len, sizeof long_len);
    free(buf);
    static const char *const files[]
        = { "tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/001.p/44" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/export/%s", db->tmp, files[i]);
        assert_int_equal(keten_file_read(p, 1u << 20, &buf, &blen), KETEN_OK);
        free(buf);
    }

    /* One byte added after the last record of a bundle. */
    snprintf(p, sizeof p, "%s/export/tile/entries/001.p/44", db->tmp);
    FILE *f = fopen(p, "ab");
    assert_non_null(f);
    assert_int_equal(fputc(0, f), 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(tiles_reader_new(db->t, &r), KETEN_OK);
    keten_err e = KETEN_OK;
    for (uint64_t i = 0; i <= N && e == KETEN_OK; i++) {
        e = tiles_reader_next(r, &at, &leaf, &len, &end);
    }
    tiles_reader_destroy(&r);
    assert_int_equal(e, KETEN_ERR_MALFORMED);
    assert_non_null(strstr(keten_err_detail(), "tile/entries/001.p/44 has 1 bytes after its last record 299"));
    auditdb_close(&db);
    free(big);
    fixture_destroy(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_field),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_html_text),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_stats_by),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_verify_accepts),
        cmocka_unit_test(test_verify_header_mismatch),
        cmocka_unit_test(test_verify_order),
        cmocka_unit_test(test_verify_foreign_signature),
        cmocka_unit_test(test_verify_duplicate),
        cmocka_unit_test(test_verify_broker_claims),
        cmocka_unit_test(test_verify_no_directory),
        cmocka_unit_test(test_verify_other_anchor),
        cmocka_unit_test(test_verify_checkpoint_key),
        cmocka_unit_test(test_verify_receipts_accepts),
        cmocka_unit_test(test_verify_receipt_path),
        cmocka_unit_test(test_verify_receipt_signature),
        cmocka_unit_test(test_verify_receipt_outcome),
        cmocka_unit_test(test_verify_receipt_envelope),
        cmocka_unit_test(test_verify_receipt_parties),
        cmocka_unit_test(test_export_tiles),
        cmocka_unit_test(test_rejected_attribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
