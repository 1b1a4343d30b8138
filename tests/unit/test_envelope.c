/*
 * test_envelope.c - sign-and-encrypt (docs/protocol.md section 5) on a real test
 * network: real keys, real signed directories, every refusal with its own
 * error code. Some envelopes are built by hand here, independently of
 * envelope.c, following docs/protocol.md section 5 step by step, so that the checks of
 * the opener are exercised on inputs seal() would never produce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "dirbuild.h"
#include "envelope.h"
#include "fixture.h"
#include "pb.h"
#include "signal_json.h"
#include "util.h"

#define HOUR_MS (3600ull * 1000ull)

static const char *const specs[] = { "gemeente-diemen:municipality", "politie-mn:police",
    "belastingdienst:tax", "woonstad:housing", "broker:broker", NULL };

static const char signal_json[]
    = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\","
      "\"summary\":\"Adres staat op naam van 9 personen; ramen afgeplakt\",\"nature\":\"soft\","
      "\"grading\":{\"source\":\"B\",\"information\":\"2\"},\"handling\":\"TLP:AMBER\","
      "\"observed_at\":\"2026-11-19T10:30:00Z\",\"observed_by\":\"handhaver\","
      "\"subjects\":[{\"kind\":\"address\",\"value\":\"Hoofdstraat 1, 1111 AA Diemen\"},"
      "{\"kind\":\"company\",\"value\":\"KvK 12345678\"}]}";

static const char small_json[] = "{\"type\":\"woonfraude\",\"purpose\":\"handhaving\"}";

static int setup(void **state)
{
    *state = fixture_new(3, 2, specs);
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    fixture_destroy(&fx);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static const char *errname(keten_err e) { return keten_err_str(e); }

static void expect_open(fixture *fx, const char *who, const uint8_t *env, size_t len, uint64_t now,
    keten_err expected, const char *detail_part)
{
    keten_identity *me = fixture_node(fx, who);
    assert_non_null(me);
    keten_envelope_verified *v = NULL;
    Keten__Signal *sig = NULL;
    keten_err_clear();
    keten_err e = keten_envelope_open(me, fx->directory, env, len, now, &v, &sig);
    if (e != expected) {
        fail_msg("open by %s: expected %s, got %s: %s", who, errname(expected), errname(e),
            keten_err_detail());
    }
    if (detail_part != NULL && strstr(keten_err_detail(), detail_part) == NULL) {
        fail_msg(
            "open by %s: detail '%s' does not mention '%s'", who, keten_err_detail(), detail_part);
    }
    if (expected == KETEN_OK) {
        assert_non_null(v);
        assert_non_null(sig);
    } else {
        assert_null(v);
        assert_null(sig);
    }
    keten_envelope_verified_destroy(&v);
    keten_signal_json_free(&sig);
}

static void expect_verify(fixture *fx, const uint8_t *env, size_t len, keten_err expected)
{
    keten_envelope_verified *v = NULL;
    keten_err_clear();
    keten_err e = keten_envelope_verify(fx->directory, env, len, &v);
    if (e != expected) {
        fail_msg(
            "verify: expected %s, got %s: %s", errname(expected), errname(e), keten_err_detail());
    }
    if (expected == KETEN_OK) {
        assert_non_null(v);
    } else {
        assert_null(v);
    }
    keten_envelope_verified_destroy(&v);
}

static char *json_of(const Keten__Signal *sig)
{
    char *json = NULL;
    assert_int_equal(keten_signal_json_to_text(sig, &json), KETEN_OK);
    return json;
}

static uint8_t *payload_of(const char *json, size_t *len)
{
    Keten__Signal *sig = NULL;
    assert_int_equal(keten_signal_json_parse(json, strlen(json), &sig), KETEN_OK);
    uint8_t *buf = NULL;
    assert_int_equal(keten_signal_json_pack(sig, &buf, len), KETEN_OK);
    keten_signal_json_free(&sig);
    return buf;
}

static keten_envelope_seal_params params_now(const char *category, const char *purpose)
{
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params p = {
        .kind = KETEN__KIND__KIND_SIGNAL,
        .category = category,
        .purpose = purpose,
        .in_reply_to = NULL,
        .created_at = now,
        .expires_at = now + HOUR_MS,
    };
    return p;
}

static keten_err seal_raw(fixture *fx, const char *from, const char *const *to, size_t n,
    const keten_envelope_seal_params *p, const uint8_t *payload, size_t payload_len, uint8_t **out,
    size_t *out_len)
{
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    keten_identity *sender = fixture_node(fx, from);
    assert_non_null(sender);
    keten_err_clear();
    return keten_envelope_seal(
        sender, fx->directory, to, n, p, payload, payload_len, msg_id, out, out_len);
}

static Keten__Envelope *unpack_envelope(const uint8_t *buf, size_t len)
{
    Keten__Envelope *env = keten__envelope__unpack(NULL, len, buf);
    assert_non_null(env);
    return env;
}

static uint8_t *pack_envelope(const Keten__Envelope *env, size_t *len)
{
    *len = keten__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(keten__envelope__pack(env, buf), *len);
    return buf;
}

/* ---- an independent construction of docs/protocol.md section 5 ------------------- */

typedef struct hand_opts {
    const keten_identity *signer; /* whose key signs */
    const char *sender; /* header sender; default signer's id */
    const char *hint; /* Envelope.sender; default header sender */
    const char *network; /* default the directory's */
    const char *const *recipients; /* node ids; unknown ids get random wrapped keys */
    size_t n_recipients;
    uint64_t created_at; /* default now */
    uint64_t expires_at; /* default created_at + 1 h */
    const char *category; /* default woonfraude */
    const char *purpose; /* default handhaving */
    bool commit_with_other_key; /* commitment under a different K */
    const uint8_t *header_suffix; /* raw bytes appended to the header, then signed */
    size_t header_suffix_len;
    const char *payload_json; /* signal JSON; default small_json */
} hand_opts;

static uint8_t *hand_seal(fixture *fx, const hand_opts *o, size_t *len_out)
{
    const keten_directory *dir = fx->directory;
    uint8_t k[32], k_other[32], enc_key[32], msg_id[16], nonce[24], commit[32], keys_hash[32];
    randombytes_buf(k, sizeof k);
    randombytes_buf(k_other, sizeof k_other);
    randombytes_buf(msg_id, sizeof msg_id);
    randombytes_buf(nonce, sizeof nonce);

    /* 1. encryption key from K */
    assert_int_equal(crypto_kdf_derive_from_key(enc_key, sizeof enc_key, 1, "ketenenc", k), 0);
    /* 2. commitment = BLAKE2b-256 keyed with K over label || msg_id */
    uint8_t commit_in[sizeof "keten/commit/v1" - 1 + 16];
    memcpy(commit_in, "keten/commit/v1", sizeof "keten/commit/v1" - 1);
    memcpy(commit_in + sizeof "keten/commit/v1" - 1, msg_id, 16);
    assert_int_equal(crypto_generichash(commit, 32, commit_in, sizeof commit_in,
                         o->commit_with_other_key ? k_other : k, 32),
        0);
    /* 3. keys: crypto_box_seal(K) per recipient, in header order */
    size_t n = o->n_recipients;
    Keten__WrappedKey *items = calloc(n ? n : 1, sizeof *items);
    Keten__WrappedKey **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    uint8_t *sealed = calloc(n ? n : 1, 80);
    assert_non_null(items);
    assert_non_null(ptrs);
    assert_non_null(sealed);
    for (size_t i = 0; i < n; i++) {
        const Keten__NodeCert *c = keten_directory_find_id(dir, o->recipients[i]);
        if (c != NULL) {
            assert_int_equal(crypto_box_seal(sealed + 80 * i, k, 32, c->enc_pk.data), 0);
        } else {
            randombytes_buf(sealed + 80 * i, 80);
        }
        keten__wrapped_key__init(&items[i]);
        items[i].recipient = (char *)o->recipients[i];
        items[i].sealed.data = sealed + 80 * i;
        items[i].sealed.len = 80;
        ptrs[i] = &items[i];
    }
    Keten__WrappedKeys wk = KETEN__WRAPPED_KEYS__INIT;
    wk.n_keys = n;
    wk.keys = ptrs;
    size_t keys_len = keten__wrapped_keys__get_packed_size(&wk);
    uint8_t *keys = malloc(keys_len ? keys_len : 1);
    assert_non_null(keys);
    keten__wrapped_keys__pack(&wk, keys);
    crypto_hash_sha256(keys_hash, keys, keys_len);
    /* 4. payload padded to 1 KiB */
    size_t payload_len = 0;
    uint8_t *payload = payload_of(o->payload_json ? o->payload_json : small_json, &payload_len);
    assert_true(payload_len < 1024);
    uint8_t padded[1024];
    memcpy(padded, payload, payload_len);
    size_t padded_len = 0;
    assert_int_equal(sodium_pad(&padded_len, padded, payload_len, 1024, sizeof padded), 0);
    assert_int_equal(padded_len, 1024);
    /* 5. header, then the ciphertext with AD = label || header */
    uint64_t created = o->created_at ? o->created_at : keten_now_ms();
    Keten__Header h = KETEN__HEADER__INIT;
    h.network = (char *)(o->network ? o->network : keten_directory_network(dir));
    h.msg_id.data = msg_id;
    h.msg_id.len = 16;
    h.sender = (char *)(o->sender ? o->sender : o->signer->id);
    h.recipients = (char **)o->recipients;
    h.n_recipients = n;
    h.created_at = created;
    h.expires_at = o->expires_at ? o->expires_at : created + HOUR_MS;
    h.kind = KETEN__KIND__KIND_SIGNAL;
    h.category = (char *)(o->category ? o->category : "woonfraude");
    h.purpose = (char *)(o->purpose ? o->purpose : "handhaving");
    h.nonce.data = nonce;
    h.nonce.len = 24;
    h.key_commitment.data = commit;
    h.key_commitment.len = 32;
    h.keys_hash.data = keys_hash;
    h.keys_hash.len = 32;
    h.padded_len = 1024;
    size_t hlen = keten__header__get_packed_size(&h);
    size_t header_len = hlen + o->header_suffix_len;
    uint8_t *header = malloc(header_len);
    assert_non_null(header);
    keten__header__pack(&h, header);
    if (o->header_suffix_len > 0) {
        memcpy(header + hlen, o->header_suffix, o->header_suffix_len);
    }
    size_t ad_len = sizeof "keten/aead/v1" - 1 + header_len;
    uint8_t *ad = malloc(ad_len);
    assert_non_null(ad);
    memcpy(ad, "keten/aead/v1", sizeof "keten/aead/v1" - 1);
    memcpy(ad + sizeof "keten/aead/v1" - 1, header, header_len);
    uint8_t ct[1024 + 16];
    unsigned long long ct_len = 0;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(
                         ct, &ct_len, padded, 1024, ad, ad_len, NULL, nonce, enc_key),
        0);
    assert_int_equal(ct_len, sizeof ct);
    /* 6. signature over label || header || SHA-256(ciphertext) */
    uint8_t ct_hash[32];
    crypto_hash_sha256(ct_hash, ct, sizeof ct);
    size_t m_len = sizeof "keten/envelope/v1" - 1 + header_len + 32;
    uint8_t *m = malloc(m_len);
    assert_non_null(m);
    memcpy(m, "keten/envelope/v1", sizeof "keten/envelope/v1" - 1);
    memcpy(m + sizeof "keten/envelope/v1" - 1, header, header_len);
    memcpy(m + sizeof "keten/envelope/v1" - 1 + header_len, ct_hash, 32);
    uint8_t sig[64];
    assert_int_equal(crypto_sign_detached(sig, NULL, m, m_len, o->signer->sign_sk), 0);

    Keten__Envelope env = KETEN__ENVELOPE__INIT;
    env.sender = (char *)(o->hint ? o->hint : h.sender);
    env.header.data = header;
    env.header.len = header_len;
    env.keys.data = keys;
    env.keys.len = keys_len;
    env.ciphertext.data = ct;
    env.ciphertext.len = sizeof ct;
    env.signature.data = sig;
    env.signature.len = sizeof sig;
    uint8_t *out = pack_envelope(&env, len_out);

    sodium_memzero(k, sizeof k);
    sodium_memzero(enc_key, sizeof enc_key);
    sodium_memzero(padded, sizeof padded);
    free(m);
    free(ad);
    free(header);
    free(payload);
    free(keys);
    free(sealed);
    free(ptrs);
    free(items);
    return out;
}

/* ---- tests ------------------------------------------------------------- */

/* One envelope to three partners; each opens the identical signal. */
static void test_seal_three_recipients_open(void **state)
{
    fixture *fx = *state;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *env = fixture_seal(
        fx, "gemeente-diemen", "politie-mn,belastingdienst,woonstad", signal_json, msg_id, &len);

    Keten__Signal *orig = NULL;
    assert_int_equal(keten_signal_json_parse(signal_json, strlen(signal_json), &orig), KETEN_OK);
    char *want = json_of(orig);

    static const char *const who[] = { "politie-mn", "belastingdienst", "woonstad" };
    for (size_t i = 0; i < 3; i++) {
        keten_envelope_verified *v = NULL;
        Keten__Signal *sig = NULL;
        keten_err e = keten_envelope_open(
            fixture_node(fx, who[i]), fx->directory, env, len, keten_now_ms(), &v, &sig);
        if (e != KETEN_OK) {
            fail_msg("%s: %s: %s", who[i], errname(e), keten_err_detail());
        }
        char *got = json_of(sig);
        assert_string_equal(got, want);
        assert_memory_equal(v->header->msg_id.data, msg_id, KETEN_MSG_ID_BYTES);
        assert_string_equal(v->header->sender, "gemeente-diemen");
        assert_string_equal(v->sender->id, "gemeente-diemen");
        assert_int_equal(v->header->n_recipients, 3);
        assert_string_equal(v->header->recipients[i], who[i]);
        assert_string_equal(v->header->category, "woonfraude");
        assert_string_equal(v->header->purpose, "riec-convenant/art-5");
        free(got);
        keten_signal_json_free(&sig);
        keten_envelope_verified_destroy(&v);
    }
    /* The sender is not a recipient of its own message. */
    expect_open(fx, "gemeente-diemen", env, len, keten_now_ms(), KETEN_ERR_NOT_RECIPIENT, NULL);
    free(want);
    keten_signal_json_free(&orig);
    free(env);
}

/* The broker's check needs no secret and fills in the hashes. */
static void test_verify_without_secret(void **state)
{
    fixture *fx = *state;
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    size_t len = 0;
    uint8_t *env = fixture_seal(fx, "politie-mn", "belastingdienst", signal_json, msg_id, &len);
    keten_envelope_verified *v = NULL;
    assert_int_equal(keten_envelope_verify(fx->directory, env, len, &v), KETEN_OK);
    uint8_t h[32];
    crypto_hash_sha256(h, env, len);
    assert_memory_equal(v->envelope_hash, h, 32);
    crypto_hash_sha256(h, v->envelope->ciphertext.data, v->envelope->ciphertext.len);
    assert_memory_equal(v->ciphertext_hash, h, 32);
    assert_memory_equal(v->header->msg_id.data, msg_id, 16);
    assert_string_equal(v->sender->id, "politie-mn");
    assert_int_equal(v->header->kind, KETEN__KIND__KIND_SIGNAL);
    assert_int_equal(v->header->padded_len, 1024);
    assert_int_equal(v->envelope->ciphertext.len, 1024 + 16);
    /* The content key commitment and nonce are of the right sizes. */
    assert_int_equal(v->header->key_commitment.len, 32);
    assert_int_equal(v->header->nonce.len, 24);
    /* The subject identifiers are nowhere in the clear. */
    assert_null(memmem(env, len, "Hoofdstraat", 11));
    assert_null(memmem(env, len, "12345678", 8));
    keten_envelope_verified_destroy(&v);
    free(env);
}

/* The hand-built envelope (this file's own reading of docs/protocol.md section 5) opens:
 * seal() and this construction agree. */
static void test_hand_built_envelope_opens(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn", "woonstad" };
    hand_opts o
        = { .signer = fixture_node(fx, "gemeente-diemen"), .recipients = to, .n_recipients = 2 };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_OK, NULL);
    expect_open(fx, "woonstad", env, len, keten_now_ms(), KETEN_OK, NULL);
    free(env);
}

/* Every single byte of every part, flipped, makes open fail. */
static void test_every_byte_flip_refused(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env = fixture_seal(fx, "gemeente-diemen", "politie-mn", small_json, NULL, &len);
    uint64_t now = keten_now_ms();
    expect_open(fx, "politie-mn", env, len, now, KETEN_OK, NULL);
    keten_identity *me = fixture_node(fx, "politie-mn");
    Keten__Envelope *orig = unpack_envelope(env, len);

    ProtobufCBinaryData *parts[]
        = { &orig->header, &orig->keys, &orig->ciphertext, &orig->signature };
    static const char *const names[] = { "header", "keys", "ciphertext", "signature" };
    static const uint8_t masks[] = { 0x01, 0x80, 0xff };
    size_t tried = 0;
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        size_t n = parts[p]->len;
        assert_true(n > 0);
        uint8_t *copy = malloc(n);
        assert_non_null(copy);
        for (size_t i = 0; i < n; i++) {
            for (size_t m = 0; m < sizeof masks; m++) {
                memcpy(copy, parts[p]->data, n);
                copy[i] ^= masks[m];
                Keten__Envelope e2 = *orig;
                ProtobufCBinaryData *slots[]
                    = { &e2.header, &e2.keys, &e2.ciphertext, &e2.signature };
                slots[p]->data = copy;
                size_t len2 = 0;
                uint8_t *buf2 = pack_envelope(&e2, &len2);
                keten_envelope_verified *v = NULL;
                Keten__Signal *sig = NULL;
                keten_err e = keten_envelope_open(me, fx->directory, buf2, len2, now, &v, &sig);
                if (e == KETEN_OK) {
                    fail_msg("%s byte %zu ^ 0x%02x was accepted", names[p], i, masks[m]);
                }
                assert_null(v);
                assert_null(sig);
                free(buf2);
                tried++;
            }
        }
        free(copy);
    }
    /* The sender hint too. */
    char hint[64];
    size_t hint_len = strlen(orig->sender);
    for (size_t i = 0; i < hint_len; i++) {
        snprintf(hint, sizeof hint, "%s", orig->sender);
        hint[i] ^= 0x01;
        Keten__Envelope e2 = *orig;
        e2.sender = hint;
        size_t len2 = 0;
        uint8_t *buf2 = pack_envelope(&e2, &len2);
        keten_envelope_verified *v = NULL;
        assert_int_not_equal(
            keten_envelope_open(me, fx->directory, buf2, len2, now, &v, NULL), KETEN_OK);
        assert_null(v);
        free(buf2);
    }
    assert_true(tried > 3 * (1024 + 64));
    keten__envelope__free_unpacked(orig, NULL);
    free(env);
}

/* A header with an unknown or a duplicated field, validly signed by the
 * sender's real key, is refused as not canonical. */
static void test_noncanonical_header_refused(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    keten_identity *sender = fixture_node(fx, "gemeente-diemen");
    /* field 15 (unknown), varint 1 */
    static const uint8_t unknown[] = { (15 << 3) | 0, 0x01 };
    /* field 3 (sender) again: the same value written twice */
    static const uint8_t dup[] = { (3 << 3) | 2, 15, 'g', 'e', 'm', 'e', 'e', 'n', 't', 'e', '-',
        'd', 'i', 'e', 'm', 'e', 'n' };
    /* field 6 (expires_at) again: a second reading of the expiry */
    static const uint8_t dup_expiry[] = { (6 << 3) | 0, 0x01 };
    const struct {
        const uint8_t *b;
        size_t n;
    } suffixes[]
        = { { unknown, sizeof unknown }, { dup, sizeof dup }, { dup_expiry, sizeof dup_expiry } };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        hand_opts o = { .signer = sender,
            .recipients = to,
            .n_recipients = 1,
            .header_suffix = suffixes[i].b,
            .header_suffix_len = suffixes[i].n };
        size_t len = 0;
        uint8_t *env = hand_seal(fx, &o, &len);
        /* The signature itself is valid. */
        Keten__Envelope *e = unpack_envelope(env, len);
        uint8_t ct_hash[32];
        crypto_hash_sha256(ct_hash, e->ciphertext.data, e->ciphertext.len);
        size_t m_len = 17 + e->header.len + 32;
        uint8_t *m = malloc(m_len);
        assert_non_null(m);
        memcpy(m, "keten/envelope/v1", 17);
        memcpy(m + 17, e->header.data, e->header.len);
        memcpy(m + 17 + e->header.len, ct_hash, 32);
        assert_int_equal(
            crypto_sign_verify_detached(e->signature.data, m, m_len, sender->sign_pk), 0);
        free(m);
        keten__envelope__free_unpacked(e, NULL);

        expect_verify(fx, env, len, KETEN_ERR_NOT_CANONICAL);
        expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_NOT_CANONICAL, NULL);
        free(env);
    }
}

/* keys from another message do not match this header's keys_hash. */
static void test_swapped_keys_refused(void **state)
{
    fixture *fx = *state;
    size_t len_a = 0, len_b = 0;
    uint8_t *a = fixture_seal(fx, "gemeente-diemen", "politie-mn", small_json, NULL, &len_a);
    uint8_t *b = fixture_seal(fx, "gemeente-diemen", "politie-mn", small_json, NULL, &len_b);
    Keten__Envelope *ea = unpack_envelope(a, len_a);
    Keten__Envelope *eb = unpack_envelope(b, len_b);
    Keten__Envelope mixed = *ea;
    mixed.keys = eb->keys;
    size_t len = 0;
    uint8_t *buf = pack_envelope(&mixed, &len);
    expect_verify(fx, buf, len, KETEN_ERR_KEYS_HASH);
    expect_open(fx, "politie-mn", buf, len, keten_now_ms(), KETEN_ERR_KEYS_HASH, NULL);
    /* Twin: the unmodified envelopes pass. */
    expect_verify(fx, a, len_a, KETEN_OK);
    expect_verify(fx, b, len_b, KETEN_OK);
    free(buf);
    keten__envelope__free_unpacked(eb, NULL);
    keten__envelope__free_unpacked(ea, NULL);
    free(b);
    free(a);
}

static size_t ciphertext_len_of(fixture *fx, const uint8_t *env, size_t len)
{
    keten_envelope_verified *v = NULL;
    assert_int_equal(keten_envelope_verify(fx->directory, env, len, &v), KETEN_OK);
    size_t n = v->envelope->ciphertext.len;
    keten_envelope_verified_destroy(&v);
    return n;
}

/* Padding: 10 and 900 bytes look the same; the bucket edges move. */
static void test_padding_hides_size(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    uint8_t payload[70000];
    randombytes_buf(payload, sizeof payload);
    const size_t sizes[] = { 10, 900, 1023, 1024, 4095, 4096, 65535, 65536 };
    const size_t want[] = { 1024, 1024, 1024, 4096, 4096, 16384, 65536, 131072 };
    size_t ct[8];
    size_t env_len[8];
    for (size_t i = 0; i < 8; i++) {
        uint8_t *env = NULL;
        keten_err e
            = seal_raw(fx, "gemeente-diemen", to, 1, &p, payload, sizes[i], &env, &env_len[i]);
        if (e != KETEN_OK) {
            fail_msg("seal %zu bytes: %s: %s", sizes[i], errname(e), keten_err_detail());
        }
        ct[i] = ciphertext_len_of(fx, env, env_len[i]);
        assert_int_equal(ct[i], want[i] + 16);
        assert_int_equal(keten_envelope_pad_bucket(sizes[i]), want[i]);
        free(env);
    }
    assert_int_equal(ct[0], ct[1]);
    assert_int_equal(env_len[0], env_len[1]);
    assert_int_not_equal(ct[2], ct[3]);
    /* Beyond 64 KiB, powers of two. */
    assert_int_equal(keten_envelope_pad_bucket(131071), 131072);
    assert_int_equal(keten_envelope_pad_bucket(131072), 262144);
    assert_int_equal(keten_envelope_pad_bucket(0), 1024);
}

static void test_not_recipient(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env
        = fixture_seal(fx, "gemeente-diemen", "politie-mn,belastingdienst", small_json, NULL, &len);
    expect_open(fx, "woonstad", env, len, keten_now_ms(), KETEN_ERR_NOT_RECIPIENT, "woonstad");
    expect_open(fx, "broker", env, len, keten_now_ms(), KETEN_ERR_NOT_RECIPIENT, NULL);
    expect_open(fx, "belastingdienst", env, len, keten_now_ms(), KETEN_OK, NULL);
    free(env);
}

/* A sender that gives recipients a key its commitment does not bind. */
static void test_commitment_mismatch(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    hand_opts o = { .signer = fixture_node(fx, "gemeente-diemen"),
        .recipients = to,
        .n_recipients = 1,
        .commit_with_other_key = true };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    /* The broker cannot see it (no key), the recipient can. */
    expect_verify(fx, env, len, KETEN_OK);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_COMMITMENT, NULL);
    free(env);
}

/* A wrapped key that does not open with the recipient's key. */
static void test_wrapped_key_for_other_key(void **state)
{
    fixture *fx = *state;
    size_t len_a = 0;
    uint8_t *a = fixture_seal(fx, "gemeente-diemen", "politie-mn", small_json, NULL, &len_a);
    /* politie-mn's identity with woonstad's encryption keys. */
    keten_identity *real = fixture_node(fx, "politie-mn");
    keten_identity *other = fixture_node(fx, "woonstad");
    keten_identity *fake = sodium_malloc(sizeof *fake);
    assert_non_null(fake);
    memcpy(fake, real, sizeof *fake);
    memcpy(fake->enc_pk, other->enc_pk, sizeof fake->enc_pk);
    memcpy(fake->enc_sk, other->enc_sk, sizeof fake->enc_sk);
    keten_envelope_verified *v = NULL;
    assert_int_equal(keten_envelope_open(fake, fx->directory, a, len_a, keten_now_ms(), &v, NULL),
        KETEN_ERR_DECRYPT);
    assert_null(v);
    sodium_free(fake);
    free(a);
}

static void test_signal_header_mismatch(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    keten_identity *sender = fixture_node(fx, "gemeente-diemen");
    /* Signal says drugs, header says woonfraude. */
    hand_opts o = { .signer = sender,
        .recipients = to,
        .n_recipients = 1,
        .category = "woonfraude",
        .payload_json = "{\"type\":\"drugs\",\"purpose\":\"handhaving\"}" };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_OK);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_MISMATCH, "type");
    free(env);
    /* Purpose differs. */
    hand_opts o2 = { .signer = sender,
        .recipients = to,
        .n_recipients = 1,
        .purpose = "handhaving",
        .payload_json = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\"}" };
    env = hand_seal(fx, &o2, &len);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_MISMATCH, "purpose");
    free(env);
    /* The same through seal(), which does not read its payload. */
    keten_envelope_seal_params p = params_now("adrescheck", "handhaving");
    size_t plen = 0;
    uint8_t *payload = payload_of(small_json, &plen);
    uint8_t *env3 = NULL;
    size_t len3 = 0;
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &p, payload, plen, &env3, &len3), KETEN_OK);
    expect_open(fx, "politie-mn", env3, len3, keten_now_ms(), KETEN_ERR_MISMATCH, NULL);
    free(env3);
    free(payload);
}

/* Signed by one partner, claiming to be from another. */
static void test_hint_differs_from_header(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "belastingdienst" };
    hand_opts o = { .signer = fixture_node(fx, "politie-mn"),
        .sender = "gemeente-diemen",
        .hint = "politie-mn",
        .recipients = to,
        .n_recipients = 1 };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_ERR_MISMATCH);
    expect_open(fx, "belastingdienst", env, len, keten_now_ms(), KETEN_ERR_MISMATCH, NULL);
    free(env);
    /* With the hint naming the claimed sender, politie's signature fails. */
    hand_opts o2 = o;
    o2.hint = "gemeente-diemen";
    env = hand_seal(fx, &o2, &len);
    expect_verify(fx, env, len, KETEN_ERR_BAD_SIGNATURE);
    free(env);
    /* An unknown hint. */
    hand_opts o3 = o;
    o3.hint = "onbekend";
    env = hand_seal(fx, &o3, &len);
    expect_verify(fx, env, len, KETEN_ERR_UNKNOWN_NODE);
    free(env);
}

static void test_wrong_network(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    hand_opts o = { .signer = fixture_node(fx, "gemeente-diemen"),
        .network = "othernet",
        .recipients = to,
        .n_recipients = 1 };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_ERR_WRONG_NETWORK);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_WRONG_NETWORK, NULL);
    free(env);
}

static void test_sender_certificate_validity(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    const Keten__NodeCert *cert = keten_directory_find_id(fx->directory, "gemeente-diemen");
    assert_non_null(cert);
    /* Created when the certificate had expired. */
    hand_opts o = { .signer = fixture_node(fx, "gemeente-diemen"),
        .recipients = to,
        .n_recipients = 1,
        .created_at = cert->not_after };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_ERR_EXPIRED);
    expect_open(fx, "politie-mn", env, len, cert->not_after + 1, KETEN_ERR_EXPIRED, NULL);
    free(env);
    /* Created before it was valid. */
    o.created_at = cert->not_before - 1;
    env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_ERR_NOT_YET_VALID);
    free(env);
    /* Twin: the last valid millisecond. */
    o.created_at = cert->not_after - 1;
    env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_OK);
    free(env);
    /* seal() refuses to produce such envelopes at all. */
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    p.created_at = cert->not_after;
    p.expires_at = p.created_at + HOUR_MS;
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &p, (const uint8_t *)"x", 1, &out, &out_len),
        KETEN_ERR_EXPIRED);
    assert_null(out);
}

static void test_expired_envelope_at_open(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    size_t plen = 0;
    uint8_t *payload = payload_of(small_json, &plen);
    uint8_t *env = NULL;
    size_t len = 0;
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &p, payload, plen, &env, &len), KETEN_OK);
    expect_open(fx, "politie-mn", env, len, p.expires_at, KETEN_ERR_EXPIRED, NULL);
    expect_open(fx, "politie-mn", env, len, p.expires_at + HOUR_MS, KETEN_ERR_EXPIRED, NULL);
    expect_open(fx, "politie-mn", env, len, p.expires_at - 1, KETEN_OK, NULL);
    /* Verify (the broker's check) does not look at the clock. */
    expect_verify(fx, env, len, KETEN_OK);
    free(env);
    free(payload);
}

/* A deny rule for one pair: that recipient refuses, the other accepts. Then
 * with no allow rule at all, the default denies. */
static void test_policy_at_open(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env
        = fixture_seal(fx, "gemeente-diemen", "politie-mn,woonstad", signal_json, NULL, &len);
    uint32_t rule = 0;
    assert_int_equal(keten_dirbuild_add_rule(fx->draft, KETEN__EFFECT__EFFECT_DENY,
                         "gemeente-diemen", "role:housing", "woonfraude", NULL, NULL, &rule),
        KETEN_OK);
    size_t dlen = 0;
    free(fixture_publish(fx, &dlen));
    char want[32];
    snprintf(want, sizeof want, "rule %u", rule);
    expect_open(fx, "woonstad", env, len, keten_now_ms(), KETEN_ERR_POLICY, want);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_OK, NULL);

    assert_int_equal(keten_dirbuild_remove_rule(fx->draft, 1), KETEN_OK);
    free(fixture_publish(fx, &dlen));
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_POLICY, "rule 0");
    free(env);
}

static void test_revoked_sender(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env = fixture_seal(fx, "woonstad", "politie-mn", small_json, NULL, &len);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_OK, NULL);
    assert_int_equal(
        keten_dirbuild_revoke(fx->draft, "woonstad", "key lost", keten_now_ms()), KETEN_OK);
    size_t dlen = 0;
    free(fixture_publish(fx, &dlen));
    expect_verify(fx, env, len, KETEN_ERR_REVOKED);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_REVOKED, "woonstad");
    /* A revoked node can no longer seal, and nobody seals to it. */
    static const char *const to_p[] = { "politie-mn" };
    static const char *const to_w[] = { "woonstad" };
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(seal_raw(fx, "woonstad", to_p, 1, &p, (const uint8_t *)"x", 1, &out, &out_len),
        KETEN_ERR_REVOKED);
    assert_int_equal(
        seal_raw(fx, "politie-mn", to_w, 1, &p, (const uint8_t *)"x", 1, &out, &out_len),
        KETEN_ERR_UNKNOWN_NODE);
    assert_null(out);
    free(env);
}

/* A sender rotates its keys while a message is in flight: the message,
 * created before the rotation, still verifies with the superseded key; one
 * dated after the rotation but signed with the old key does not. */
static void test_rotation_keeps_in_flight_messages(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env = fixture_seal(fx, "woonstad", "politie-mn", small_json, NULL, &len);
    /* Sealed before the rotation too, but dated an hour later. */
    keten_envelope_seal_params late = params_now("woonfraude", "handhaving");
    late.created_at += 3600u * 1000u;
    late.expires_at += 3600u * 1000u;
    static const char *const to_p[] = { "politie-mn" };
    uint8_t *late_env = NULL;
    size_t late_len = 0;
    assert_int_equal(seal_raw(fx, "woonstad", to_p, 1, &late, (const uint8_t *)"x", 1,
                         &late_env, &late_len),
        KETEN_OK);

    keten_identity *fresh = NULL;
    uint8_t *req = NULL;
    size_t req_len = 0;
    Keten__NodeRequest *rq = NULL;
    uint64_t serial = 0;
    assert_int_equal(keten_identity_generate("woonstad", "housing", "Woonstad", false, &fresh),
        KETEN_OK);
    assert_int_equal(
        keten_identity_request(fresh, "testnet", keten_now_ms(), &req, &req_len), KETEN_OK);
    assert_int_equal(keten_identity_request_verify(req, req_len, &rq), KETEN_OK);
    assert_int_equal(keten_dirbuild_approve(fx->draft, rq, keten_now_ms(),
                         30 * KETEN_MS_PER_DAY, true, &serial),
        KETEN_OK);
    size_t dlen = 0;
    free(fixture_publish(fx, &dlen));

    /* In flight: verifies with the superseded certificate, and opens. */
    keten_envelope_verified *v = NULL;
    assert_int_equal(keten_envelope_verify(fx->directory, env, len, &v), KETEN_OK);
    assert_int_not_equal(v->sender->serial, serial);
    keten_envelope_verified_destroy(&v);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_OK, NULL);
    /* Dated after the rotation with the old key: refused. */
    expect_verify(fx, late_env, late_len, KETEN_ERR_REVOKED);

    keten_pb_free((ProtobufCMessage **)&rq);
    free(req);
    keten_identity_destroy(&fresh);
    free(late_env);
    free(env);
}

/* Seal woonstad -> politie-mn, a valid signal, with the given times. */
static uint8_t *seal_times(fixture *fx, uint64_t created_at, uint64_t expires_at, size_t *len)
{
    static const char *const to_p[] = { "politie-mn" };
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    p.created_at = created_at;
    p.expires_at = expires_at;
    size_t plen = 0;
    uint8_t *payload = payload_of(small_json, &plen);
    uint8_t *env = NULL;
    assert_int_equal(seal_raw(fx, "woonstad", to_p, 1, &p, payload, plen, &env, len), KETEN_OK);
    free(payload);
    return env;
}

/* The attack: a superseded signing key (and a broker that lets it through)
 * signs a message dated before the rotation with a ten-year lifetime. It
 * does not verify after the rotation, nor open 300 days later; a message
 * really in flight at the rotation, with the longest lifetime the directory
 * allows, still does. A key superseded because it was compromised signs
 * nothing at all. */
static void test_rotation_bounds_superseded_key(void **state)
{
    fixture *fx = *state;
    uint64_t now = keten_now_ms();
    uint64_t max_life = keten_directory_max_lifetime(fx->directory);
    assert_int_equal(max_life, KETEN_MAX_LIFETIME_DEFAULT_MS);
    size_t long_len = 0, max_len = 0;
    uint8_t *ten_years = seal_times(fx, now, now + 3650 * KETEN_MS_PER_DAY, &long_len);
    uint8_t *in_flight = seal_times(fx, now, now + max_life, &max_len);
    /* Before the rotation the broker's verification takes both; opening
     * refuses the one whose lifetime is over the directory's maximum. */
    expect_verify(fx, ten_years, long_len, KETEN_OK);
    expect_open(fx, "politie-mn", ten_years, long_len, now, KETEN_ERR_EXPIRED, "maximum");

    keten_identity *fresh = NULL;
    uint8_t *req = NULL;
    size_t req_len = 0;
    Keten__NodeRequest *rq = NULL;
    uint64_t serial = 0;
    assert_int_equal(
        keten_identity_generate("woonstad", "housing", "Woonstad", false, &fresh), KETEN_OK);
    assert_int_equal(
        keten_identity_request(fresh, "testnet", keten_now_ms(), &req, &req_len), KETEN_OK);
    assert_int_equal(keten_identity_request_verify(req, req_len, &rq), KETEN_OK);
    assert_int_equal(
        keten_dirbuild_approve(fx->draft, rq, keten_now_ms(), 30 * KETEN_MS_PER_DAY, true, &serial),
        KETEN_OK);
    size_t dlen = 0;
    free(fixture_publish(fx, &dlen));
    const Keten__Revocation *r = keten_directory_find_revoked(fx->directory, "woonstad");
    assert_non_null(r);
    assert_true(r->superseded);
    assert_false(keten_directory_revocation_compromised(r));

    /* Outlives the rotation plus the longest lifetime: refused, by the
     * broker's verification and by the recipient, 300 days on too. */
    expect_verify(fx, ten_years, long_len, KETEN_ERR_REVOKED);
    expect_open(fx, "politie-mn", ten_years, long_len, now + 300 * KETEN_MS_PER_DAY,
        KETEN_ERR_REVOKED, "after its rotation");
    /* Twin: in flight with the longest lifetime allowed: verifies, opens
     * until it expires. */
    expect_verify(fx, in_flight, max_len, KETEN_OK);
    expect_open(fx, "politie-mn", in_flight, max_len, now + max_life - 1, KETEN_OK, NULL);
    expect_open(fx, "politie-mn", in_flight, max_len, now + max_life, KETEN_ERR_EXPIRED, NULL);

    /* The same rotation, had its reason been a compromise: nothing signed
     * with the old key counts. */
    char *reason = r->reason;
    ((Keten__Revocation *)r)->reason = (char *)"key-compromise: laptop stolen";
    assert_true(keten_directory_revocation_compromised(r));
    expect_verify(fx, in_flight, max_len, KETEN_ERR_REVOKED);
    expect_open(fx, "politie-mn", in_flight, max_len, now, KETEN_ERR_REVOKED, "compromised");
    ((Keten__Revocation *)r)->reason = reason;
    expect_verify(fx, in_flight, max_len, KETEN_OK);

    keten_pb_free((ProtobufCMessage **)&rq);
    free(req);
    keten_identity_destroy(&fresh);
    free(in_flight);
    free(ten_years);
}

/* The recipient makes the broker's time checks again: a lifetime over the
 * directory's maximum, and a created_at further ahead of its clock than
 * KETEN_CLOCK_SKEW_MS, are refused; the limits themselves are accepted. */
static void test_open_checks_times(void **state)
{
    fixture *fx = *state;
    uint64_t now = keten_now_ms();
    uint64_t max_life = keten_directory_max_lifetime(fx->directory);
    size_t len = 0;
    uint8_t *env = seal_times(fx, now, now + max_life + 1, &len);
    expect_open(fx, "politie-mn", env, len, now, KETEN_ERR_EXPIRED, "maximum");
    free(env);
    env = seal_times(fx, now, now + max_life, &len); /* twin */
    expect_open(fx, "politie-mn", env, len, now, KETEN_OK, NULL);
    free(env);

    uint64_t ahead = now + KETEN_CLOCK_SKEW_MS + 1;
    env = seal_times(fx, ahead, ahead + HOUR_MS, &len);
    expect_open(fx, "politie-mn", env, len, now, KETEN_ERR_CLOCK_SKEW, "ahead of this node's");
    /* The same message a moment later, once within the skew, opens. */
    expect_open(fx, "politie-mn", env, len, now + 1, KETEN_OK, NULL);
    free(env);
}

static void test_seal_refusals(void **state)
{
    fixture *fx = *state;
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    const uint8_t x[1] = { 'x' };
    uint8_t *out = NULL;
    size_t out_len = 0;

    /* 65 recipients, and 0. */
    char names[65][8];
    const char *many[65];
    for (size_t i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "n%zu", i);
        many[i] = names[i];
    }
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", many, 65, &p, x, 1, &out, &out_len), KETEN_ERR_INVALID);
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", many, 0, &p, x, 1, &out, &out_len), KETEN_ERR_INVALID);

    static const char *const dup[] = { "politie-mn", "woonstad", "politie-mn" };
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", dup, 3, &p, x, 1, &out, &out_len), KETEN_ERR_DUPLICATE_ID);
    static const char *const unknown[] = { "politie-mn", "onbekend" };
    assert_int_equal(seal_raw(fx, "gemeente-diemen", unknown, 2, &p, x, 1, &out, &out_len),
        KETEN_ERR_UNKNOWN_NODE);
    static const char *const bad[] = { "Politie MN" };
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", bad, 1, &p, x, 1, &out, &out_len), KETEN_ERR_BAD_NAME);
    static const char *const broker[] = { "politie-mn", "broker" };
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", broker, 2, &p, x, 1, &out, &out_len), KETEN_ERR_INVALID);

    static const char *const to[] = { "politie-mn" };
    keten_envelope_seal_params q = p;
    q.category = "wapenhandel";
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &q, x, 1, &out, &out_len), KETEN_ERR_UNREGISTERED);
    q = p;
    q.purpose = "nieuwsgierigheid";
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &q, x, 1, &out, &out_len), KETEN_ERR_UNREGISTERED);
    q = p;
    q.expires_at = q.created_at;
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &q, x, 1, &out, &out_len), KETEN_ERR_INVALID);
    q = p;
    q.kind = KETEN__KIND__KIND_UNSPECIFIED;
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &q, x, 1, &out, &out_len), KETEN_ERR_INVALID);
    assert_null(out);

    /* A sender that is not in the directory at all. */
    keten_identity *stranger = NULL;
    assert_int_equal(
        keten_identity_generate("vreemde", "police", "Vreemde", false, &stranger), KETEN_OK);
    uint8_t msg_id[16];
    assert_int_equal(
        keten_envelope_seal(stranger, fx->directory, to, 1, &p, x, 1, msg_id, &out, &out_len),
        KETEN_ERR_UNKNOWN_NODE);
    /* Nor one that carries a listed id with keys of its own. */
    keten_identity *impostor = NULL;
    assert_int_equal(
        keten_identity_generate("gemeente-diemen", "municipality", "Nep", false, &impostor),
        KETEN_OK);
    assert_int_equal(
        keten_envelope_seal(impostor, fx->directory, to, 1, &p, x, 1, msg_id, &out, &out_len),
        KETEN_ERR_MISMATCH);
    assert_null(out);
    keten_identity_destroy(&impostor);
    keten_identity_destroy(&stranger);

    /* Twins: 64 distinct is only refused because the nodes are unknown, and
     * a good call succeeds. */
    assert_int_equal(seal_raw(fx, "gemeente-diemen", many, 64, &p, x, 1, &out, &out_len),
        KETEN_ERR_UNKNOWN_NODE);
    assert_int_equal(seal_raw(fx, "gemeente-diemen", to, 1, &p, x, 1, &out, &out_len), KETEN_OK);
    assert_non_null(out);
    free(out);
}

/* A header with 65 recipients, signed properly, is refused by verify. */
static void test_verify_refuses_65_recipients(void **state)
{
    fixture *fx = *state;
    char names[65][8];
    const char *many[65];
    for (size_t i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "n%zu", i);
        many[i] = names[i];
    }
    many[0] = "politie-mn";
    hand_opts o
        = { .signer = fixture_node(fx, "gemeente-diemen"), .recipients = many, .n_recipients = 65 };
    size_t len = 0;
    uint8_t *env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_ERR_MALFORMED);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_ERR_MALFORMED, NULL);
    free(env);
    /* Twin: 64 is the limit. */
    o.n_recipients = 64;
    env = hand_seal(fx, &o, &len);
    expect_verify(fx, env, len, KETEN_OK);
    expect_open(fx, "politie-mn", env, len, keten_now_ms(), KETEN_OK, NULL);
    free(env);
    /* Duplicate recipients in a signed header. */
    static const char *const dup[] = { "politie-mn", "politie-mn" };
    hand_opts d
        = { .signer = fixture_node(fx, "gemeente-diemen"), .recipients = dup, .n_recipients = 2 };
    env = hand_seal(fx, &d, &len);
    expect_verify(fx, env, len, KETEN_ERR_MALFORMED);
    free(env);
}

static void test_truncated_and_empty(void **state)
{
    fixture *fx = *state;
    size_t len = 0;
    uint8_t *env = fixture_seal(fx, "gemeente-diemen", "politie-mn", small_json, NULL, &len);
    keten_identity *me = fixture_node(fx, "politie-mn");
    for (size_t n = 0; n < len; n++) {
        /* An exact-size copy, so that a read past n is caught by the sanitizer. */
        uint8_t *cut = malloc(n ? n : 1);
        assert_non_null(cut);
        memcpy(cut, env, n);
        keten_envelope_verified *v = NULL;
        assert_int_not_equal(keten_envelope_verify(fx->directory, cut, n, &v), KETEN_OK);
        assert_null(v);
        assert_int_not_equal(
            keten_envelope_open(me, fx->directory, cut, n, keten_now_ms(), &v, NULL), KETEN_OK);
        assert_null(v);
        free(cut);
    }
    keten_envelope_verified *v = NULL;
    assert_int_not_equal(keten_envelope_verify(fx->directory, NULL, 0, &v), KETEN_OK);
    assert_int_not_equal(keten_envelope_verify(fx->directory, env, 0, &v), KETEN_OK);
    assert_null(v);
    /* Garbage of the full length. */
    uint8_t *junk = malloc(len);
    assert_non_null(junk);
    randombytes_buf(junk, len);
    assert_int_not_equal(keten_envelope_verify(fx->directory, junk, len, &v), KETEN_OK);
    free(junk);
    expect_verify(fx, env, len, KETEN_OK);
    free(env);
}

static void test_oversize(void **state)
{
    fixture *fx = *state;
    static const char *const to[] = { "politie-mn" };
    keten_envelope_seal_params p = params_now("woonfraude", "handhaving");
    size_t big = 512u << 10;
    uint8_t *payload = malloc(KETEN_ENVELOPE_MAX + 1);
    assert_non_null(payload);
    randombytes_buf(payload, KETEN_ENVELOPE_MAX + 1);
    uint8_t *out = NULL;
    size_t out_len = 0;
    /* Verify refuses anything over the cap before parsing. */
    expect_verify(fx, payload, KETEN_ENVELOPE_MAX + 1, KETEN_ERR_TOO_LARGE);
    /* A payload whose bucket (1 MiB) cannot fit the envelope cap. */
    assert_int_equal(seal_raw(fx, "gemeente-diemen", to, 1, &p, payload, big, &out, &out_len),
        KETEN_ERR_TOO_LARGE);
    assert_null(out);
    /* Twin: one byte less fits the 512 KiB bucket. */
    assert_int_equal(
        seal_raw(fx, "gemeente-diemen", to, 1, &p, payload, big - 1, &out, &out_len), KETEN_OK);
    assert_true(out_len <= KETEN_ENVELOPE_MAX);
    assert_int_equal(ciphertext_len_of(fx, out, out_len), big + 16);
    free(out);
    free(payload);
}

/* ---- acknowledgements -------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seal_three_recipients_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_without_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_built_envelope_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_byte_flip_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noncanonical_header_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swapped_keys_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_padding_hides_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_recipient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commitment_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrapped_key_for_other_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_header_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hint_differs_from_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sender_certificate_validity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_envelope_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_keeps_in_flight_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_bounds_superseded_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_checks_times, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_refuses_65_recipients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
