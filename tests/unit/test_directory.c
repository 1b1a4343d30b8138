/*
 * test_directory.c - directory verification, the version chain and lookups,
 * on a real test network (tests/unit/fixture.c): real administrator keys,
 * real enrolled node identities, directories built with dirbuild. Every
 * accepted directory has its refused twins (too few, repeated or foreign
 * signatures; another network; an older or conflicting version; expired or
 * future; broken administrator rotation; duplicated keys; tampered,
 * non-canonical, truncated and oversize bytes), each with its exact error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "pb.h"
#include "util.h"

#define DAY KETEN_MS_PER_DAY
#define MINUTE (60ull * 1000ull)
#define VALID (14ull * DAY)
#define LABEL_LEN (sizeof KETEN_LABEL_DIRECTORY - 1)
#define N_NEW_ADMINS 3

static const char *const specs[] = { "broker:broker", "gemeente-diemen:municipality",
    "politie-mn:police", "politie-ams:police", "belasting:tax", "woco:housing", NULL };

/* ---- helpers ------------------------------------------------------------ */

static int setup(void **state)
{
    *state = fixture_new(3, 2, specs);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fixture_destroy(&f);
    return 0;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
    uint8_t *c = malloc(len ? len : 1);
    assert_non_null(c);
    memcpy(c, p, len);
    return c;
}

/* The verified version-1 SignedDirectory bytes of the fixture (a copy). */
static uint8_t *current_bytes(const fixture *f, size_t *len)
{
    const uint8_t *b = keten_directory_bytes(f->directory, len);
    return dup_bytes(b, *len);
}

static keten_err verify_only(const Keten__Anchor *anchor, const keten_directory *prev,
    const uint8_t *buf, size_t len, uint64_t now)
{
    keten_directory *d = NULL;
    keten_err e = keten_directory_verify(anchor, prev, buf, len, now, &d);
    if (e == KETEN_OK) {
        assert_non_null(d);
        keten_directory_destroy(&d);
        assert_null(d);
    } else {
        assert_null(d);
    }
    return e;
}

static uint8_t *sign_draft(fixture *f, uint64_t now, const size_t *signers, size_t n, size_t *len)
{
    return fixture_sign_draft(f, now, VALID, signers, n, len);
}

/* Append a signature by sk (any key) with keten_directory_sign. */
static void add_signature(uint8_t **sd, size_t *len, const uint8_t *sk)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(keten_directory_sign(NULL, 0, *sd, *len, sk, &out, &out_len), KETEN_OK);
    free(*sd);
    *sd = out;
    *len = out_len;
}

/* The draft as a parsed Directory (issued now), for hand edits. */
static Keten__Directory *draft_doc(fixture *f, uint64_t now)
{
    uint8_t *dir = NULL;
    size_t len = 0;
    assert_int_equal(keten_dirbuild_finish(f->draft, now, VALID, &dir, &len), KETEN_OK);
    Keten__Directory *doc = (Keten__Directory *)protobuf_c_message_unpack(
        &keten__directory__descriptor, NULL, len, dir);
    assert_non_null(doc);
    free(dir);
    return doc;
}

static void doc_free(Keten__Directory **doc)
{
    keten_pb_free((ProtobufCMessage **)(void *)doc);
}

/* A SignedDirectory over raw Directory bytes by secret keys, built by hand
 * (so that even bytes keten_directory_sign refuses can be signed). */
static uint8_t *sign_raw(
    const uint8_t *dir, size_t dir_len, uint8_t *const *sks, size_t n, size_t *len)
{
    uint8_t *msg = malloc(LABEL_LEN + dir_len);
    assert_non_null(msg);
    memcpy(msg, KETEN_LABEL_DIRECTORY, LABEL_LEN);
    memcpy(msg + LABEL_LEN, dir, dir_len);
    Keten__DirectorySignature sigs[FIXTURE_MAX_ADMINS];
    Keten__DirectorySignature *ptrs[FIXTURE_MAX_ADMINS];
    uint8_t pks[FIXTURE_MAX_ADMINS][KETEN_SIGN_PK_BYTES];
    uint8_t sig[FIXTURE_MAX_ADMINS][KETEN_SIG_BYTES];
    assert_true(n <= FIXTURE_MAX_ADMINS);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(crypto_sign_ed25519_sk_to_pk(pks[i], sks[i]), 0);
        assert_int_equal(crypto_sign_detached(sig[i], NULL, msg, LABEL_LEN + dir_len, sks[i]), 0);
        keten__directory_signature__init(&sigs[i]);
        sigs[i].admin_pk.data = pks[i];
        sigs[i].admin_pk.len = KETEN_SIGN_PK_BYTES;
        sigs[i].signature.data = sig[i];
        sigs[i].signature.len = KETEN_SIG_BYTES;
        ptrs[i] = &sigs[i];
    }
    Keten__SignedDirectory sd = KETEN__SIGNED_DIRECTORY__INIT;
    sd.directory.data = (uint8_t *)dir;
    sd.directory.len = dir_len;
    sd.signatures = ptrs;
    sd.n_signatures = n;
    uint8_t *out = NULL;
    assert_int_equal(keten_pb_pack(&sd.base, &out, len), KETEN_OK);
    free(msg);
    return out;
}

/* Pack a hand-edited Directory and sign it with fixture admins a and b. */
static uint8_t *sign_doc(const fixture *f, const Keten__Directory *doc, size_t *len)
{
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    assert_int_equal(keten_pb_pack(&doc->base, &dir, &dir_len), KETEN_OK);
    uint8_t *sks[2] = { f->admin_sk[0], f->admin_sk[1] };
    uint8_t *out = sign_raw(dir, dir_len, sks, 2, len);
    free(dir);
    return out;
}

/* The Directory bytes inside SignedDirectory bytes (a copy). */
static uint8_t *inner_directory(const uint8_t *sd_bytes, size_t len, size_t *dir_len)
{
    Keten__SignedDirectory *sd = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(
                         keten__signed_directory, sd_bytes, len, KETEN_DIRECTORY_MAX, "test", &sd),
        KETEN_OK);
    uint8_t *dir = dup_bytes(sd->directory.data, sd->directory.len);
    *dir_len = sd->directory.len;
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return dir;
}

typedef struct admin_set {
    uint8_t pk[N_NEW_ADMINS][KETEN_SIGN_PK_BYTES];
    uint8_t *sk[N_NEW_ADMINS];
} admin_set;

static void admin_set_make(admin_set *s)
{
    for (size_t i = 0; i < N_NEW_ADMINS; i++) {
        s->sk[i] = sodium_malloc(KETEN_SIGN_SK_BYTES);
        assert_non_null(s->sk[i]);
        assert_int_equal(crypto_sign_keypair(s->pk[i], s->sk[i]), 0);
    }
}

static void admin_set_free(admin_set *s)
{
    for (size_t i = 0; i < N_NEW_ADMINS; i++) {
        sodium_free(s->sk[i]);
        s->sk[i] = NULL;
    }
}

#define ADMINS(a) ((const uint8_t(*)[KETEN_SIGN_PK_BYTES])(a))

/* ---- first version against the anchor ---------------------------------- */

static void test_v1_verifies_against_anchor(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t len = 0;
    uint8_t *v1 = current_bytes(f, &len);
    keten_directory *d = NULL;
    assert_int_equal(keten_directory_verify(f->anchor, NULL, v1, len, now, &d), KETEN_OK);
    assert_int_equal(keten_directory_version(d), 1);
    assert_string_equal(keten_directory_network(d), "testnet");
    /* The hash is SHA-256 of the Directory bytes, recomputed here. */
    size_t dir_len = 0;
    uint8_t *dir = inner_directory(v1, len, &dir_len);
    uint8_t hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(hash, dir, dir_len);
    assert_memory_equal(keten_directory_hash(d), hash, sizeof hash);
    size_t blen = 0;
    const uint8_t *b = keten_directory_bytes(d, &blen);
    assert_int_equal(blen, len);
    assert_memory_equal(b, v1, len);
    const Keten__Directory *doc = keten_directory_doc(d);
    assert_int_equal(doc->n_nodes, 6);
    assert_true(keten_directory_fresh(d, now));
    assert_false(keten_directory_fresh(d, doc->expires_at));
    assert_true(keten_directory_fresh(d, doc->issued_at - KETEN_CLOCK_SKEW_MS));
    assert_false(keten_directory_fresh(d, doc->issued_at - KETEN_CLOCK_SKEW_MS - 1));
    assert_true(keten_directory_category_registered(d, "woonfraude"));
    assert_true(keten_directory_purpose_registered(d, "riec-convenant/art-5"));
    assert_false(keten_directory_category_registered(d, "handhaving"));
    assert_false(keten_directory_purpose_registered(d, "woonfraude"));
    keten_directory_destroy(&d);
    free(dir);

    /* The file the fixture wrote loads the same way; a missing file does not. */
    char path[PATH_MAX];
    fixture_path(f, "directory", path);
    assert_int_equal(keten_directory_load(f->anchor, path, now, &d), KETEN_OK);
    assert_int_equal(keten_directory_version(d), 1);
    keten_directory_destroy(&d);
    fixture_path(f, "no-such-directory", path);
    assert_int_equal(keten_directory_load(f->anchor, path, now, &d), KETEN_ERR_NOT_FOUND);
    assert_null(d);
    /* No anchor and no predecessor: nothing to verify against. */
    assert_int_equal(verify_only(NULL, NULL, v1, len, now), KETEN_ERR_INVALID);
    free(v1);
}

static void test_threshold_signatures(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    struct {
        size_t signers[4];
        size_t n;
        keten_err want;
    } cases[] = {
        { { 0, 1 }, 2, KETEN_OK }, { { 1, 2 }, 2, KETEN_OK }, { { 2, 0, 1 }, 3, KETEN_OK },
        { { 0 }, 1, KETEN_ERR_THRESHOLD }, /* k - 1 */
        { { 0 }, 0, KETEN_ERR_THRESHOLD }, /* none */
        { { 0, 0 }, 2, KETEN_ERR_THRESHOLD }, /* k, but one key twice */
        { { 2, 2, 2 }, 3, KETEN_ERR_THRESHOLD }, /* one key three times */
        { { 1, 1, 2 }, 3, KETEN_OK }, /* a repeat does not spoil two */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = 0;
        uint8_t *sd = sign_draft(f, now, cases[i].signers, cases[i].n, &len);
        /* Against the anchor (first version installed) and against v1. */
        assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), cases[i].want);
        assert_int_equal(verify_only(NULL, f->directory, sd, len, now), cases[i].want);
        free(sd);
    }
}

static void test_non_admin_signature_counts_nothing(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    uint8_t outsider_pk[KETEN_SIGN_PK_BYTES];
    uint8_t *outsider_sk = sodium_malloc(KETEN_SIGN_SK_BYTES);
    assert_non_null(outsider_sk);
    assert_int_equal(crypto_sign_keypair(outsider_pk, outsider_sk), 0);

    size_t signers[] = { 0 };
    size_t len = 0;
    uint8_t *sd = sign_draft(f, now, signers, 1, &len);
    add_signature(&sd, &len, outsider_sk);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_ERR_THRESHOLD);
    assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), KETEN_ERR_THRESHOLD);
    /* Twin: a second administrator makes it valid; the outsider is ignored. */
    add_signature(&sd, &len, f->admin_sk[1]);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_OK);
    Keten__SignedDirectory *parsed = NULL;
    assert_int_equal(KETEN_PB_UNPACK_CANONICAL(
                         keten__signed_directory, sd, len, KETEN_DIRECTORY_MAX, "test", &parsed),
        KETEN_OK);
    assert_int_equal(parsed->n_signatures, 3);
    size_t count = 99;
    assert_int_equal(
        keten_directory_count_signatures(parsed, f->anchor->admins, f->anchor->n_admins, &count),
        KETEN_OK);
    assert_int_equal(count, 2);
    ProtobufCBinaryData outsider = { KETEN_SIGN_PK_BYTES, outsider_pk };
    assert_int_equal(keten_directory_count_signatures(parsed, &outsider, 1, &count), KETEN_OK);
    assert_int_equal(count, 1);

    /* An entry by a non-administrator whose signature is garbage is ignored
     * too: it is not an administrator's signature, so it is never checked. */
    Keten__DirectorySignature junk = KETEN__DIRECTORY_SIGNATURE__INIT;
    uint8_t junk_pk[KETEN_SIGN_PK_BYTES];
    uint8_t junk_sig[KETEN_SIG_BYTES];
    randombytes_buf(junk_pk, sizeof junk_pk);
    randombytes_buf(junk_sig, sizeof junk_sig);
    junk.admin_pk.data = junk_pk;
    junk.admin_pk.len = sizeof junk_pk;
    junk.signature.data = junk_sig;
    junk.signature.len = sizeof junk_sig;
    Keten__DirectorySignature *with_junk[4]
        = { parsed->signatures[0], &junk, parsed->signatures[1], parsed->signatures[2] };
    Keten__SignedDirectory copy = *parsed;
    copy.signatures = with_junk;
    copy.n_signatures = 4;
    uint8_t *sd2 = NULL;
    size_t sd2_len = 0;
    assert_int_equal(keten_pb_pack(&copy.base, &sd2, &sd2_len), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, sd2, sd2_len, now), KETEN_OK);
    free(sd2);
    /* The same garbage under an administrator's key is tampering. */
    memcpy(junk_pk, f->admin_pk[2], KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_pb_pack(&copy.base, &sd2, &sd2_len), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, sd2, sd2_len, now), KETEN_ERR_BAD_SIGNATURE);
    free(sd2);
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    free(sd);
    sodium_free(outsider_sk);
}

static void test_wrong_anchor(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t len = 0;
    uint8_t *v1 = current_bytes(f, &len);

    Keten__Anchor other = *f->anchor;
    other.network = (char *)"othernet";
    assert_int_equal(verify_only(&other, NULL, v1, len, now), KETEN_ERR_WRONG_NETWORK);

    admin_set s;
    admin_set_make(&s);
    ProtobufCBinaryData keys[N_NEW_ADMINS];
    for (size_t i = 0; i < N_NEW_ADMINS; i++) {
        keys[i].data = s.pk[i];
        keys[i].len = KETEN_SIGN_PK_BYTES;
    }
    Keten__Anchor same_name = *f->anchor;
    same_name.admins = keys;
    same_name.n_admins = N_NEW_ADMINS;
    assert_int_equal(verify_only(&same_name, NULL, v1, len, now), KETEN_ERR_THRESHOLD);

    /* The same keys with a stricter threshold: two signatures are too few. */
    Keten__Anchor stricter = *f->anchor;
    stricter.threshold = 3;
    assert_int_equal(verify_only(&stricter, NULL, v1, len, now), KETEN_ERR_THRESHOLD);
    /* A broken anchor is refused before anything else. */
    Keten__Anchor broken = *f->anchor;
    broken.threshold = 0;
    assert_int_equal(verify_only(&broken, NULL, v1, len, now), KETEN_ERR_INVALID);
    /* Twin: the real anchor. */
    assert_int_equal(verify_only(f->anchor, NULL, v1, len, now), KETEN_OK);
    admin_set_free(&s);
    free(v1);
}

/* ---- versions ------------------------------------------------------------ */

static void test_rollback(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t v1_len = 0;
    uint8_t *v1 = current_bytes(f, &v1_len);
    keten_directory *d1 = NULL;
    assert_int_equal(keten_directory_verify(f->anchor, NULL, v1, v1_len, now, &d1), KETEN_OK);

    /* Two different documents for version 2. */
    size_t s12[] = { 1, 2 };
    size_t v2b_len = 0;
    uint8_t *v2b = sign_draft(f, now, s12, 2, &v2b_len);
    size_t v2_len = 0;
    uint8_t *v2 = fixture_publish(f, &v2_len);
    assert_int_equal(keten_directory_version(f->directory), 2);
    assert_true(v2_len != v2b_len || memcmp(v2, v2b, v2_len) != 0);

    /* Each is acceptable after v1 ... */
    assert_int_equal(verify_only(NULL, d1, v2b, v2b_len, now), KETEN_OK);
    assert_int_equal(verify_only(NULL, d1, v2, v2_len, now), KETEN_OK);
    /* ... but with v2 installed: v1 is older, v2b is another v2, and v2 itself
     * is not newer. */
    assert_int_equal(verify_only(NULL, f->directory, v1, v1_len, now), KETEN_ERR_ROLLBACK);
    assert_int_equal(verify_only(NULL, f->directory, v2b, v2b_len, now), KETEN_ERR_ROLLBACK);
    assert_int_equal(verify_only(NULL, f->directory, v2, v2_len, now), KETEN_ERR_ROLLBACK);
    assert_int_equal(verify_only(NULL, d1, v1, v1_len, now), KETEN_ERR_ROLLBACK);
    /* The chain walker says the same for a conflicting version 2. */
    const uint8_t *bufs[] = { v2b };
    size_t lens[] = { v2b_len };
    keten_directory *out = NULL;
    assert_int_equal(keten_directory_verify_chain(NULL, f->directory, bufs, lens, 1, now, &out),
        KETEN_ERR_ROLLBACK);
    assert_null(out);
    /* Twin: the identical version 2 is skipped, not refused. */
    bufs[0] = v2;
    lens[0] = v2_len;
    assert_int_equal(
        keten_directory_verify_chain(NULL, f->directory, bufs, lens, 1, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 2);
    keten_directory_destroy(&out);
    keten_directory_destroy(&d1);
    free(v1);
    free(v2);
    free(v2b);
}

static void test_expiry(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t s01[] = { 0, 1 };
    size_t len = 0;
    /* Issued 20 days ago, valid 14 days. */
    uint8_t *old = fixture_sign_draft(f, now - 20 * DAY, VALID, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, old, len, now), KETEN_ERR_EXPIRED);
    assert_int_equal(verify_only(f->anchor, NULL, old, len, now), KETEN_ERR_EXPIRED);
    /* Exactly at expiry it is expired; a millisecond before it is not. */
    assert_int_equal(verify_only(NULL, f->directory, old, len, now - 6 * DAY), KETEN_ERR_EXPIRED);
    assert_int_equal(verify_only(NULL, f->directory, old, len, now - 6 * DAY - 1), KETEN_OK);
    /* Twins: at a time inside its window, and with time checks off. */
    assert_int_equal(verify_only(NULL, f->directory, old, len, now - 10 * DAY), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, old, len, 0), KETEN_OK);
    free(old);

    /* expires_at must come after issued_at, whatever the clock. */
    Keten__Directory *doc = draft_doc(f, now);
    doc->expires_at = doc->issued_at;
    uint8_t *bad = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, bad, len, 0), KETEN_ERR_INVALID);
    free(bad);
    doc->expires_at = doc->issued_at + 1;
    uint8_t *good = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, good, len, 0), KETEN_OK);
    free(good);
    doc_free(&doc);
}

static void test_not_yet_valid(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t s01[] = { 0, 1 };
    size_t len = 0;
    uint8_t *future = sign_draft(f, now + 10 * MINUTE, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, future, len, now), KETEN_ERR_NOT_YET_VALID);
    assert_int_equal(verify_only(f->anchor, NULL, future, len, now), KETEN_ERR_NOT_YET_VALID);
    /* Twins: within the 5-minute skew, later, or with time checks off. */
    assert_int_equal(verify_only(NULL, f->directory, future, len, now + 5 * MINUTE), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, future, len, now + 5 * MINUTE - 1),
        KETEN_ERR_NOT_YET_VALID);
    assert_int_equal(verify_only(NULL, f->directory, future, len, 0), KETEN_OK);
    free(future);
    uint8_t *soon = sign_draft(f, now + 4 * MINUTE, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, soon, len, now), KETEN_OK);
    free(soon);
}

/* ---- administrator rotation -------------------------------------------- */

static void test_admin_change_needs_new_signatures(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    admin_set s;
    admin_set_make(&s);
    assert_int_equal(keten_dirbuild_set_admins(f->draft, ADMINS(s.pk), N_NEW_ADMINS, 2), KETEN_OK);

    size_t s01[] = { 0, 1 };
    size_t len = 0;
    uint8_t *v2 = sign_draft(f, now, s01, 2, &len);
    /* Only the old administrators signed: refused. */
    assert_int_equal(verify_only(NULL, f->directory, v2, len, now), KETEN_ERR_THRESHOLD);
    /* One new administrator is not enough either (k' = 2). */
    add_signature(&v2, &len, s.sk[0]);
    assert_int_equal(verify_only(NULL, f->directory, v2, len, now), KETEN_ERR_THRESHOLD);
    /* Twin: k' new signatures make it valid. */
    add_signature(&v2, &len, s.sk[2]);
    keten_directory *d2 = NULL;
    assert_int_equal(keten_directory_verify(NULL, f->directory, v2, len, now, &d2), KETEN_OK);

    /* Only the new administrators signed: the old ones did not agree. */
    size_t none_len = 0;
    uint8_t *only_new = sign_draft(f, now, NULL, 0, &none_len);
    add_signature(&only_new, &none_len, s.sk[0]);
    add_signature(&only_new, &none_len, s.sk[1]);
    add_signature(&only_new, &none_len, s.sk[2]);
    assert_int_equal(verify_only(NULL, f->directory, only_new, none_len, now), KETEN_ERR_THRESHOLD);
    free(only_new);

    /* Version 3 after the change: the new set decides, the old set counts
     * nothing any more. */
    size_t dir_len = 0;
    uint8_t *dir = inner_directory(v2, len, &dir_len);
    assert_int_equal(keten_dirbuild_advance(f->draft, dir, dir_len), KETEN_OK);
    free(dir);
    size_t v3_len = 0;
    uint8_t *v3 = sign_draft(f, now, s01, 2, &v3_len);
    assert_int_equal(verify_only(NULL, d2, v3, v3_len, now), KETEN_ERR_THRESHOLD);
    add_signature(&v3, &v3_len, s.sk[1]);
    assert_int_equal(verify_only(NULL, d2, v3, v3_len, now), KETEN_ERR_THRESHOLD);
    add_signature(&v3, &v3_len, s.sk[2]);
    assert_int_equal(verify_only(NULL, d2, v3, v3_len, now), KETEN_OK);
    /* The chain from the anchor carries the change through. */
    const uint8_t *bufs[] = { keten_directory_bytes(f->directory, &(size_t) { 0 }), v2, v3 };
    size_t lens[3];
    (void)keten_directory_bytes(f->directory, &lens[0]);
    lens[1] = len;
    lens[2] = v3_len;
    keten_directory *out = NULL;
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, bufs, lens, 3, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    keten_directory_destroy(&out);
    /* v3 carries the anchor's administrators' signatures too, so it is also
     * valid straight against the anchor; signed by the new set alone it is
     * valid after v2 but not against the anchor. */
    assert_int_equal(verify_only(f->anchor, NULL, v3, v3_len, now), KETEN_OK);
    size_t v3n_len = 0;
    uint8_t *v3n = sign_draft(f, now, NULL, 0, &v3n_len);
    add_signature(&v3n, &v3n_len, s.sk[1]);
    add_signature(&v3n, &v3n_len, s.sk[2]);
    assert_int_equal(verify_only(NULL, d2, v3n, v3n_len, now), KETEN_OK);
    assert_int_equal(verify_only(f->anchor, NULL, v3n, v3n_len, now), KETEN_ERR_THRESHOLD);
    free(v3n);
    free(v3);
    free(v2);
    keten_directory_destroy(&d2);
    admin_set_free(&s);
}

static void test_threshold_change_needs_new_signatures(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    /* Same keys, threshold 2 -> 3. */
    assert_int_equal(keten_dirbuild_set_admins(f->draft, ADMINS(f->admin_pk), 3, 3), KETEN_OK);
    size_t s01[] = { 0, 1 };
    size_t s012[] = { 0, 1, 2 };
    size_t len = 0;
    uint8_t *v = sign_draft(f, now, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_ERR_THRESHOLD);
    free(v);
    v = sign_draft(f, now, s012, 3, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_OK);
    free(v);

    /* Threshold 2 -> 1: the old threshold still applies to this version. */
    assert_int_equal(keten_dirbuild_set_admins(f->draft, ADMINS(f->admin_pk), 3, 1), KETEN_OK);
    size_t s0[] = { 0 };
    v = sign_draft(f, now, s0, 1, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_ERR_THRESHOLD);
    free(v);
    v = sign_draft(f, now, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_OK);
    free(v);

    /* The same set in another order is no change. */
    uint8_t reordered[3][KETEN_SIGN_PK_BYTES];
    memcpy(reordered[0], f->admin_pk[2], KETEN_SIGN_PK_BYTES);
    memcpy(reordered[1], f->admin_pk[0], KETEN_SIGN_PK_BYTES);
    memcpy(reordered[2], f->admin_pk[1], KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_dirbuild_set_admins(f->draft, ADMINS(reordered), 3, 2), KETEN_OK);
    size_t s2[] = { 2 };
    v = sign_draft(f, now, s2, 1, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_ERR_THRESHOLD);
    free(v);
    v = sign_draft(f, now, s01, 2, &len);
    assert_int_equal(verify_only(NULL, f->directory, v, len, now), KETEN_OK);
    free(v);
}

/* ---- structure ------------------------------------------------------------ */

static void test_admin_listed_twice(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    Keten__Directory *doc = draft_doc(f, now);
    assert_int_equal(doc->n_admins, 3);
    uint8_t saved[KETEN_SIGN_PK_BYTES];
    memcpy(saved, doc->admins[2].data, KETEN_SIGN_PK_BYTES);
    memcpy(doc->admins[2].data, doc->admins[0].data, KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_KEY);
    size_t len = 0;
    uint8_t *sd = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_ERR_DUPLICATE_KEY);
    free(sd);
    /* Twin: the same directory with distinct keys. */
    memcpy(doc->admins[2].data, saved, KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    sd = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_OK);
    free(sd);
    doc_free(&doc);
    /* dirbuild refuses the same. */
    uint8_t twice[2][KETEN_SIGN_PK_BYTES];
    memcpy(twice[0], f->admin_pk[0], KETEN_SIGN_PK_BYTES);
    memcpy(twice[1], f->admin_pk[0], KETEN_SIGN_PK_BYTES);
    assert_int_equal(
        keten_dirbuild_set_admins(f->draft, ADMINS(twice), 2, 1), KETEN_ERR_DUPLICATE_KEY);
}

static void test_threshold_out_of_range(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    Keten__Directory *doc = draft_doc(f, now);
    uint32_t bad[] = { 0, 4, 1000 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        doc->threshold = bad[i];
        assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
        size_t len = 0;
        uint8_t *sd = sign_doc(f, doc, &len);
        assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_ERR_INVALID);
        assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), KETEN_ERR_INVALID);
        free(sd);
        assert_int_equal(
            keten_dirbuild_set_admins(f->draft, ADMINS(f->admin_pk), 3, bad[i]), KETEN_ERR_INVALID);
    }
    /* No administrators at all. */
    size_t n_admins = doc->n_admins;
    doc->n_admins = 0;
    doc->threshold = 0;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    doc->n_admins = n_admins;
    /* Twin: 2 of 3 again. */
    doc->threshold = 2;
    size_t len = 0;
    uint8_t *sd = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_OK);
    free(sd);
    doc_free(&doc);
}

static void replace_string(char **field, const char *value)
{
    char *copy = strdup(value);
    assert_non_null(copy);
    free(*field);
    *field = copy;
}

static void test_key_reused_in_two_certs(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    /* The fixture's draft has a revocation once politie-ams is revoked. */
    assert_int_equal(
        keten_dirbuild_revoke(f->draft, "politie-ams", "left the network", now), KETEN_OK);
    Keten__Directory *doc = draft_doc(f, now);
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    assert_int_equal(doc->n_revocations, 1);
    Keten__NodeCert *a = doc->nodes[1];
    Keten__NodeCert *b = doc->nodes[2];
    Keten__NodeCert *r = doc->revocations[0]->cert;
    uint8_t saved[KETEN_SIGN_PK_BYTES];

    /* Each kind of key, copied into another certificate. */
    ProtobufCBinaryData *targets[] = { &b->sign_pk, &b->enc_pk, &b->transport_pk, &b->enc_pk };
    const ProtobufCBinaryData *sources[]
        = { &a->sign_pk, &a->enc_pk, &a->transport_pk, &r->enc_pk };
    for (size_t i = 0; i < 4; i++) {
        memcpy(saved, targets[i]->data, KETEN_SIGN_PK_BYTES);
        memcpy(targets[i]->data, sources[i]->data, KETEN_SIGN_PK_BYTES);
        assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_KEY);
        size_t len = 0;
        uint8_t *sd = sign_doc(f, doc, &len);
        assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_ERR_DUPLICATE_KEY);
        free(sd);
        memcpy(targets[i]->data, saved, KETEN_SIGN_PK_BYTES);
    }
    /* A signing key reused as another node's transport key, and the
     * broker's log key reused as a node's signing key. */
    Keten__NodeCert *broker = doc->nodes[0];
    assert_string_equal(broker->role, "broker");
    memcpy(saved, b->transport_pk.data, KETEN_SIGN_PK_BYTES);
    memcpy(b->transport_pk.data, a->sign_pk.data, KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_KEY);
    memcpy(b->transport_pk.data, saved, KETEN_SIGN_PK_BYTES);
    memcpy(saved, b->sign_pk.data, KETEN_SIGN_PK_BYTES);
    memcpy(b->sign_pk.data, broker->log_pk.data, KETEN_SIGN_PK_BYTES);
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_KEY);
    memcpy(b->sign_pk.data, saved, KETEN_SIGN_PK_BYTES);
    /* Twin: restored, valid again. */
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    size_t len = 0;
    uint8_t *sd = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, sd, len, now), KETEN_OK);
    free(sd);
    doc_free(&doc);
}

static void test_other_structure_errors(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    Keten__Directory *doc = draft_doc(f, now);
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    Keten__NodeCert *b = doc->nodes[2];

    /* Two current certificates for one id. */
    char *id = strdup(b->id);
    assert_non_null(id);
    replace_string(&b->id, doc->nodes[1]->id);
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_ID);
    replace_string(&b->id, "Politie MN");
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_BAD_NAME);
    replace_string(&b->id, id);
    free(id);
    /* A serial used twice. */
    uint64_t serial = b->serial;
    b->serial = doc->nodes[1]->serial;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_ID);
    b->serial = serial;
    /* A log key on a certificate that is not the broker's. */
    uint8_t *log = malloc(KETEN_SIGN_PK_BYTES);
    assert_non_null(log);
    randombytes_buf(log, KETEN_SIGN_PK_BYTES);
    b->log_pk.data = log;
    b->log_pk.len = KETEN_SIGN_PK_BYTES;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    /* ... and a second broker with it. */
    char *role = strdup(b->role);
    assert_non_null(role);
    replace_string(&b->role, "broker");
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    replace_string(&b->role, role);
    free(role);
    free(b->log_pk.data);
    b->log_pk.data = NULL;
    b->log_pk.len = 0;
    /* A broker without a log key. */
    Keten__NodeCert *broker = doc->nodes[0];
    broker->log_pk.len = 0;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    broker->log_pk.len = KETEN_SIGN_PK_BYTES;
    /* A short key. */
    b->enc_pk.len = 31;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    b->enc_pk.len = KETEN_ENC_PK_BYTES;
    /* A rule naming an unregistered category; duplicate rule ids. */
    Keten__PolicyRule *rule = doc->rules[0];
    char *cat = rule->categories[0];
    rule->categories[0] = (char *)"smokkel";
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_UNREGISTERED);
    rule->categories[0] = (char *)"Smokkel";
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_BAD_NAME);
    rule->categories[0] = (char *)"woonfraude";
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    rule->categories[0] = cat;
    Keten__PolicyRule *two[2] = { rule, rule };
    Keten__PolicyRule **rules = doc->rules;
    doc->rules = two;
    doc->n_rules = 2;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_DUPLICATE_ID);
    doc->rules = rules;
    doc->n_rules = 1;
    /* A bad category label, a bad network name, version 0. */
    char *c0 = doc->categories[0];
    doc->categories[0] = (char *)"-bad";
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_BAD_NAME);
    doc->categories[0] = c0;
    char *net = doc->network;
    doc->network = (char *)"Test Net";
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_BAD_NAME);
    doc->network = net;
    uint64_t version = doc->version;
    doc->version = 0;
    assert_int_equal(keten_directory_check(doc), KETEN_ERR_INVALID);
    doc->version = version;
    /* Twin: everything restored. */
    assert_int_equal(keten_directory_check(doc), KETEN_OK);
    doc_free(&doc);
    assert_int_equal(keten_directory_check(NULL), KETEN_ERR_INVALID);
}

/* ---- tampering ----------------------------------------------------------- */

static void test_flipped_byte(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t len = 0;
    uint8_t *v1 = current_bytes(f, &len);
    keten_identity *n = fixture_node(f, "politie-mn");
    assert_non_null(n);
    uint8_t *at = memmem(v1, len, n->enc_pk, KETEN_ENC_PK_BYTES);
    assert_non_null(at);
    at[5] ^= 0x01;
    assert_int_equal(verify_only(f->anchor, NULL, v1, len, now), KETEN_ERR_BAD_SIGNATURE);
    at[5] ^= 0x01;
    assert_int_equal(verify_only(f->anchor, NULL, v1, len, now), KETEN_OK);

    /* Every single flipped bit anywhere is refused, and never crashes. */
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            v1[i] ^= (uint8_t)(1u << bit);
            keten_err e = verify_only(f->anchor, NULL, v1, len, now);
            if (e == KETEN_OK) {
                fail_msg("a flipped bit %u at byte %zu of %zu was accepted", bit, i, len);
            }
            v1[i] ^= (uint8_t)(1u << bit);
        }
    }
    free(v1);
}

static void test_unknown_field_not_canonical(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t sd_len = 0;
    uint8_t *v1 = current_bytes(f, &sd_len);
    size_t dir_len = 0;
    uint8_t *dir = inner_directory(v1, sd_len, &dir_len);
    uint8_t *longer = malloc(dir_len + 3);
    assert_non_null(longer);
    memcpy(longer, dir, dir_len);
    /* Field 99, varint, value 1. */
    longer[dir_len] = 0x98;
    longer[dir_len + 1] = 0x06;
    longer[dir_len + 2] = 0x01;
    uint8_t *sks[2] = { f->admin_sk[0], f->admin_sk[1] };
    size_t len = 0;
    uint8_t *sd = sign_raw(longer, dir_len + 3, sks, 2, &len);
    assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), KETEN_ERR_NOT_CANONICAL);
    free(sd);
    /* keten_directory_sign refuses to sign such bytes at all. */
    uint8_t *out = NULL;
    size_t out_len = 0;
    assert_int_equal(
        keten_directory_sign(longer, dir_len + 3, NULL, 0, f->admin_sk[0], &out, &out_len),
        KETEN_ERR_NOT_CANONICAL);
    assert_null(out);
    /* A repeated field (version written twice) is not canonical either. */
    longer[dir_len] = 0x10;
    longer[dir_len + 1] = 0x01;
    sd = sign_raw(longer, dir_len + 2, sks, 2, &len);
    assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), KETEN_ERR_NOT_CANONICAL);
    free(sd);
    /* An unknown field appended to the SignedDirectory itself. */
    uint8_t *outer = malloc(sd_len + 3);
    assert_non_null(outer);
    memcpy(outer, v1, sd_len);
    memcpy(outer + sd_len, "\x98\x06\x01", 3);
    assert_int_equal(verify_only(f->anchor, NULL, outer, sd_len + 3, now), KETEN_ERR_NOT_CANONICAL);
    /* Twin: the same bytes signed the same way without the extra field. */
    sd = sign_raw(dir, dir_len, sks, 2, &len);
    assert_int_equal(verify_only(f->anchor, NULL, sd, len, now), KETEN_OK);
    free(sd);
    free(outer);
    free(longer);
    free(dir);
    free(v1);
}

static void test_previous_hash(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    Keten__Directory *doc = draft_doc(f, now);
    assert_int_equal(doc->version, 2);
    assert_int_equal(doc->previous_hash.len, KETEN_HASH_BYTES);
    assert_memory_equal(
        doc->previous_hash.data, keten_directory_hash(f->directory), KETEN_HASH_BYTES);
    size_t len = 0;
    uint8_t *good = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, good, len, now), KETEN_OK);
    free(good);
    doc->previous_hash.data[0] ^= 0x80;
    uint8_t *bad = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, bad, len, now), KETEN_ERR_INCONSISTENT);
    /* Against the anchor there is no predecessor to compare with. */
    assert_int_equal(verify_only(f->anchor, NULL, bad, len, now), KETEN_OK);
    free(bad);
    /* A previous hash of the wrong size is malformed structure. */
    doc->previous_hash.len = 16;
    bad = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, bad, len, now), KETEN_ERR_INVALID);
    free(bad);
    doc->previous_hash.len = KETEN_HASH_BYTES;
    /* A skipped version is not chained to this one: the hash is not checked. */
    doc->version = 3;
    bad = sign_doc(f, doc, &len);
    assert_int_equal(verify_only(NULL, f->directory, bad, len, now), KETEN_OK);
    free(bad);
    doc_free(&doc);
}

/* ---- the chain ----------------------------------------------------------- */

static void test_verify_chain(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t l1 = 0;
    uint8_t *v1 = current_bytes(f, &l1);
    keten_directory *d1 = NULL;
    assert_int_equal(keten_directory_verify(f->anchor, NULL, v1, l1, now, &d1), KETEN_OK);
    size_t l2 = 0;
    uint8_t *v2 = fixture_publish(f, &l2);
    keten_directory *d2 = NULL;
    assert_int_equal(keten_directory_verify(NULL, d1, v2, l2, now, &d2), KETEN_OK);
    size_t l3 = 0;
    uint8_t *v3 = fixture_publish(f, &l3);

    keten_directory *out = NULL;
    const uint8_t *all[] = { v1, v2, v3 };
    size_t lens[] = { l1, l2, l3 };
    /* From the anchor. */
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, all, lens, 3, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    assert_memory_equal(
        keten_directory_hash(out), keten_directory_hash(f->directory), KETEN_HASH_BYTES);
    keten_directory_destroy(&out);
    /* From v1, with and without v1 itself in front (identical: skipped). */
    assert_int_equal(
        keten_directory_verify_chain(NULL, d1, all + 1, lens + 1, 2, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    keten_directory_destroy(&out);
    assert_int_equal(keten_directory_verify_chain(NULL, d1, all, lens, 3, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    keten_directory_destroy(&out);
    /* An identical repeat later in the chain is skipped too. */
    const uint8_t *rep[] = { v1, v2, v1, v2 };
    size_t rep_lens[] = { l1, l2, l1, l2 };
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, rep, rep_lens, 4, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 2);
    keten_directory_destroy(&out);
    /* Nothing newer: a copy of what is installed. */
    assert_int_equal(
        keten_directory_verify_chain(NULL, d2, all + 1, lens + 1, 1, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 2);
    assert_ptr_not_equal(out, d2);
    keten_directory_destroy(&out);
    assert_int_equal(keten_directory_verify_chain(NULL, d2, NULL, NULL, 0, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 2);
    keten_directory_destroy(&out);
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, NULL, NULL, 0, now, &out), KETEN_ERR_INVALID);
    /* Reject twins: out of order, and an older version not held. */
    const uint8_t *back[] = { v1, v3, v2 };
    size_t back_lens[] = { l1, l3, l2 };
    assert_int_equal(keten_directory_verify_chain(f->anchor, NULL, back, back_lens, 3, now, &out),
        KETEN_ERR_ROLLBACK);
    assert_null(out);
    assert_int_equal(
        keten_directory_verify_chain(NULL, d2, all, lens, 3, now, &out), KETEN_ERR_ROLLBACK);
    /* A damaged link stops the walk. */
    uint8_t *bad2 = dup_bytes(v2, l2);
    bad2[l2 - 1] ^= 0x01;
    const uint8_t *broken[] = { v1, bad2, v3 };
    assert_int_equal(keten_directory_verify_chain(f->anchor, NULL, broken, lens, 3, now, &out),
        KETEN_ERR_BAD_SIGNATURE);
    assert_null(out);
    /* A gap (v1 -> v3) is allowed: v3 names v2, which this party never saw. */
    const uint8_t *gap[] = { v1, v3 };
    size_t gap_lens[] = { l1, l3 };
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, gap, gap_lens, 2, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    keten_directory_destroy(&out);
    free(bad2);
    keten_directory_destroy(&d1);
    keten_directory_destroy(&d2);
    free(v1);
    free(v2);
    free(v3);
}

static void test_chain_old_links_may_be_expired(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t l1 = 0;
    uint8_t *v1 = current_bytes(f, &l1);
    size_t s01[] = { 0, 1 };
    size_t l2 = 0;
    uint8_t *v2 = fixture_sign_draft(f, now - 30 * DAY, VALID, s01, 2, &l2);
    size_t dir_len = 0;
    uint8_t *dir = inner_directory(v2, l2, &dir_len);
    assert_int_equal(keten_dirbuild_advance(f->draft, dir, dir_len), KETEN_OK);
    free(dir);
    size_t l3 = 0;
    uint8_t *v3 = sign_draft(f, now, s01, 2, &l3);

    keten_directory *out = NULL;
    const uint8_t *chain[] = { v1, v2, v3 };
    size_t lens[] = { l1, l2, l3 };
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, chain, lens, 3, now, &out), KETEN_OK);
    assert_int_equal(keten_directory_version(out), 3);
    keten_directory_destroy(&out);
    /* Twin: a chain that ends in the expired version fails closed. */
    assert_int_equal(keten_directory_verify_chain(f->anchor, NULL, chain, lens, 2, now, &out),
        KETEN_ERR_EXPIRED);
    assert_null(out);
    /* ... unless time checks are off. */
    assert_int_equal(
        keten_directory_verify_chain(f->anchor, NULL, chain, lens, 2, 0, &out), KETEN_OK);
    keten_directory_destroy(&out);
    free(v1);
    free(v2);
    free(v3);
}

/* ---- lookups ------------------------------------------------------------- */

static void test_lookups_revoked_and_rotated(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    keten_identity *ams = fixture_node(f, "politie-ams");
    keten_identity *mn = fixture_node(f, "politie-mn");
    keten_identity *broker = fixture_node(f, "broker");
    assert_non_null(ams);
    assert_non_null(mn);
    /* In version 1 both are current. */
    const Keten__NodeCert *c = keten_directory_find_id(f->directory, "politie-ams");
    assert_non_null(c);
    assert_ptr_equal(keten_directory_find_transport(f->directory, ams->transport_pk), c);
    assert_ptr_equal(keten_directory_find_sign_key(f->directory, ams->sign_pk), c);
    assert_null(keten_directory_find_revoked(f->directory, "politie-ams"));
    assert_true(keten_directory_cert_valid_at(c, now));
    assert_false(keten_directory_cert_valid_at(c, c->not_after));
    assert_false(keten_directory_cert_valid_at(c, c->not_before - 1));
    assert_true(keten_directory_cert_valid_at(c, c->not_before));

    /* Revoke politie-ams; rotate politie-mn to new keys. */
    assert_int_equal(
        keten_dirbuild_revoke(f->draft, "politie-ams", "left the network", now), KETEN_OK);
    keten_identity *mn2 = NULL;
    assert_int_equal(
        keten_identity_generate("politie-mn", "police", "Politie Midden-Nederland", false, &mn2),
        KETEN_OK);
    uint8_t *req = NULL;
    size_t req_len = 0;
    assert_int_equal(keten_identity_request(mn2, "testnet", now, &req, &req_len), KETEN_OK);
    Keten__NodeRequest *parsed = NULL;
    assert_int_equal(keten_identity_request_verify(req, req_len, &parsed), KETEN_OK);
    uint64_t serial = 0;
    assert_int_equal(
        keten_dirbuild_approve(f->draft, parsed, now, 30 * DAY, true, &serial), KETEN_OK);
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    free(req);
    size_t len = 0;
    free(fixture_publish(f, &len));
    keten_directory *d = f->directory;
    assert_int_equal(keten_directory_version(d), 2);

    /* The revoked node: gone from routing, its key still identifies it. */
    assert_null(keten_directory_find_id(d, "politie-ams"));
    assert_null(keten_directory_find_transport(d, ams->transport_pk));
    c = keten_directory_find_sign_key(d, ams->sign_pk);
    assert_non_null(c);
    assert_string_equal(c->id, "politie-ams");
    const Keten__Revocation *r = keten_directory_find_revoked(d, "politie-ams");
    assert_non_null(r);
    assert_false(r->superseded);
    assert_string_equal(r->reason, "left the network");
    assert_ptr_equal(r->cert, c);

    /* The rotated node: the new certificate is current, the old one is
     * superseded and still found by its signing key. */
    c = keten_directory_find_id(d, "politie-mn");
    assert_non_null(c);
    assert_int_equal(c->serial, serial);
    assert_memory_equal(c->sign_pk.data, mn2->sign_pk, KETEN_SIGN_PK_BYTES);
    assert_ptr_equal(keten_directory_find_transport(d, mn2->transport_pk), c);
    assert_null(keten_directory_find_transport(d, mn->transport_pk));
    const Keten__NodeCert *old = keten_directory_find_sign_key(d, mn->sign_pk);
    assert_non_null(old);
    assert_ptr_not_equal(old, c);
    assert_string_equal(old->id, "politie-mn");
    r = keten_directory_find_revoked(d, "politie-mn");
    assert_non_null(r);
    assert_true(r->superseded);
    char want[64];
    snprintf(want, sizeof want, "superseded by serial %llu", (unsigned long long)serial);
    assert_string_equal(r->reason, want);
    assert_int_equal(r->at, now);

    /* Twins: others untouched; unknown keys find nothing. */
    assert_non_null(keten_directory_find_id(d, "belasting"));
    assert_null(keten_directory_find_revoked(d, "belasting"));
    assert_null(keten_directory_find_id(d, "onbekend"));
    assert_null(keten_directory_find_id(d, NULL));
    uint8_t zero[KETEN_SIGN_PK_BYTES] = { 0 };
    assert_null(keten_directory_find_sign_key(d, zero));
    assert_null(keten_directory_find_transport(d, zero));
    const Keten__NodeCert *bc = keten_directory_broker(d);
    assert_non_null(bc);
    assert_string_equal(bc->id, "broker");
    assert_memory_equal(bc->log_pk.data, broker->log_pk, KETEN_SIGN_PK_BYTES);
    /* A signing key is not a transport key. */
    assert_null(keten_directory_find_transport(d, mn2->sign_pk));
    keten_identity_destroy(&mn2);
}

static void expect_ids(
    const keten_directory *d, const char *parties, const char *const *want, size_t n_want)
{
    const char **ids = NULL;
    size_t n = 0;
    keten_err e = keten_directory_resolve(d, parties, &ids, &n);
    if (e != KETEN_OK) {
        fail_msg("resolve '%s': %s: %s", parties, keten_err_str(e), keten_err_detail());
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ids[i], want[i]);
    }
    free(ids);
}

static void expect_resolve_error(const keten_directory *d, const char *parties, keten_err want)
{
    const char **ids = (const char **)(uintptr_t)1;
    size_t n = 99;
    assert_int_equal(keten_directory_resolve(d, parties, &ids, &n), want);
    assert_null(ids);
    assert_int_equal(n, 0);
}

static void test_resolve(void **state)
{
    fixture *f = *state;
    const keten_directory *d = f->directory;
    const char *police[] = { "politie-mn", "politie-ams" };
    expect_ids(d, "role:police", police, 2);
    expect_ids(d, "politie-mn,role:police", police, 2);
    expect_ids(d, "role:police,politie-mn,politie-ams", police, 2);
    const char *partners[]
        = { "gemeente-diemen", "politie-mn", "politie-ams", "belasting", "woco" };
    expect_ids(d, "*", partners, 5);
    expect_ids(d, "role:tax,*",
        (const char *[]) { "belasting", "gemeente-diemen", "politie-mn", "politie-ams", "woco" },
        5);
    const char *two[] = { "woco", "belasting" };
    expect_ids(d, "woco,belasting,woco", two, 2);
    assert_int_equal(keten_directory_partner_count(d), 5);
    assert_int_equal(keten_directory_quorum(d), 3);

    expect_resolve_error(d, "onbekend", KETEN_ERR_UNKNOWN_NODE);
    expect_resolve_error(d, "politie-mn,onbekend", KETEN_ERR_UNKNOWN_NODE);
    expect_resolve_error(d, "broker", KETEN_ERR_UNKNOWN_NODE);
    expect_resolve_error(d, "role:broker", KETEN_ERR_UNKNOWN_NODE);
    expect_resolve_error(d, "role:riec", KETEN_ERR_UNKNOWN_NODE);
    const char *bad[] = { "", "Politie-mn", "role:", "role:Police", "politie-mn,,woco",
        "politie-mn,", ",politie-mn", "role:*", "politie mn", "**" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_resolve_error(d, bad[i], KETEN_ERR_BAD_NAME);
    }
    expect_resolve_error(d, NULL, KETEN_ERR_BAD_NAME);
}

static void test_quorum(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    Keten__Directory *doc = draft_doc(f, now);
    doc->witness_quorum = 4;
    size_t len = 0;
    uint8_t *sd = sign_doc(f, doc, &len);
    keten_directory *d = NULL;
    assert_int_equal(keten_directory_verify(NULL, f->directory, sd, len, now, &d), KETEN_OK);
    assert_int_equal(keten_directory_quorum(d), 4);
    assert_int_equal(keten_directory_partner_count(d), 5);
    keten_directory_destroy(&d);
    free(sd);
    doc_free(&doc);
    /* Without the broker and with one partner revoked: 4 partners, quorum 3. */
    assert_int_equal(keten_dirbuild_revoke(f->draft, "woco", "test", now), KETEN_OK);
    assert_int_equal(keten_dirbuild_revoke(f->draft, "broker", "test", now), KETEN_OK);
    free(fixture_publish(f, &len));
    assert_int_equal(keten_directory_partner_count(f->directory), 4);
    assert_int_equal(keten_directory_quorum(f->directory), 3);
    assert_null(keten_directory_broker(f->directory));
}

/* ---- malformed input ------------------------------------------------------ */

static void test_truncated_and_empty(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t len = 0;
    uint8_t *v1 = current_bytes(f, &len);
    keten_directory *d = NULL;
    assert_int_equal(keten_directory_verify(f->anchor, NULL, v1, 0, now, &d), KETEN_ERR_MALFORMED);
    assert_int_equal(
        keten_directory_verify(f->anchor, NULL, NULL, 0, now, &d), KETEN_ERR_MALFORMED);
    assert_null(d);
    size_t dir_len = 0;
    free(inner_directory(v1, len, &dir_len));
    for (size_t l = 1; l < len; l++) {
        /* Each truncation in a fresh buffer of exactly that size, so that
         * the sanitizers see any read past its end. */
        uint8_t *t = dup_bytes(v1, l);
        keten_err e = verify_only(f->anchor, NULL, t, l, now);
        free(t);
        if (e == KETEN_OK) {
            fail_msg("a directory truncated to %zu of %zu bytes was accepted", l, len);
        }
        if (l < dir_len) {
            assert_int_equal(e, KETEN_ERR_MALFORMED);
        }
    }
    /* The last byte of the last signature missing. */
    assert_int_equal(verify_only(f->anchor, NULL, v1, len - 1, now), KETEN_ERR_MALFORMED);
    /* A SignedDirectory without directory bytes, and garbage. */
    uint8_t only_sigs[] = { 0x12, 0x00 };
    assert_int_equal(
        verify_only(f->anchor, NULL, only_sigs, sizeof only_sigs, now), KETEN_ERR_MALFORMED);
    uint8_t junk[256];
    for (int round = 0; round < 64; round++) {
        randombytes_buf(junk, sizeof junk);
        assert_int_not_equal(verify_only(f->anchor, NULL, junk, sizeof junk, now), KETEN_OK);
    }
    /* Twin: the whole thing. */
    assert_int_equal(verify_only(f->anchor, NULL, v1, len, now), KETEN_OK);

    /* The anchor: empty, truncated. */
    Keten__Anchor *a = NULL;
    assert_int_equal(keten_directory_anchor_parse(f->anchor_bytes, 0, &a), KETEN_ERR_MALFORMED);
    for (size_t l = 1; l < f->anchor_len; l++) {
        uint8_t *t = dup_bytes(f->anchor_bytes, l);
        assert_int_not_equal(keten_directory_anchor_parse(t, l, &a), KETEN_OK);
        assert_null(a);
        free(t);
    }
    free(v1);
}

static void test_oversize(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    size_t big_len = (size_t)KETEN_DIRECTORY_MAX + 1;
    uint8_t *big = calloc(1, big_len);
    assert_non_null(big);
    size_t len = 0;
    uint8_t *v1 = current_bytes(f, &len);
    memcpy(big, v1, len);
    assert_int_equal(verify_only(f->anchor, NULL, big, big_len, now), KETEN_ERR_TOO_LARGE);
    const uint8_t *bufs[] = { big };
    size_t lens[] = { big_len };
    keten_directory *out = NULL;
    assert_int_equal(keten_directory_verify_chain(f->anchor, NULL, bufs, lens, 1, now, &out),
        KETEN_ERR_TOO_LARGE);
    assert_null(out);
    Keten__Anchor *a = NULL;
    assert_int_equal(
        keten_directory_anchor_parse(big, (size_t)KETEN_ANCHOR_MAX + 1, &a), KETEN_ERR_TOO_LARGE);
    free(big);

    /* A file over the cap is refused before it is read. */
    char path[PATH_MAX];
    fixture_path(f, "huge-directory", path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)KETEN_DIRECTORY_MAX + 1), 0);
    assert_int_equal(close(fd), 0);
    keten_directory *d = NULL;
    assert_int_equal(keten_directory_load(f->anchor, path, now, &d), KETEN_ERR_TOO_LARGE);
    assert_null(d);
    /* Signature entries: 2 * KETEN_MAX_ADMINS are accepted (repeats count
     * once), one more is refused before any is checked. */
    size_t n_sigs = 2 * KETEN_MAX_ADMINS;
    size_t *alternate = calloc(n_sigs + 1, sizeof *alternate);
    assert_non_null(alternate);
    for (size_t i = 0; i <= n_sigs; i++) {
        alternate[i] = i % 2;
    }
    uint8_t *many = sign_draft(f, now, alternate, n_sigs, &len);
    assert_int_equal(verify_only(NULL, f->directory, many, len, now), KETEN_OK);
    /* keten_directory_sign adds no more to it. */
    uint8_t pk[KETEN_SIGN_PK_BYTES];
    uint8_t *sk = sodium_malloc(KETEN_SIGN_SK_BYTES);
    assert_non_null(sk);
    assert_int_equal(crypto_sign_keypair(pk, sk), 0);
    uint8_t *next = NULL;
    size_t next_len = 0;
    assert_int_equal(
        keten_directory_sign(NULL, 0, many, len, sk, &next, &next_len), KETEN_ERR_TOO_LARGE);
    assert_null(next);
    sodium_free(sk);
    free(many);
    many = sign_draft(f, now, alternate, n_sigs + 1, &len);
    assert_int_equal(verify_only(NULL, f->directory, many, len, now), KETEN_ERR_TOO_LARGE);
    free(alternate);
    free(many);
    free(v1);
}

/* ---- signing and the anchor ---------------------------------------------- */

static void test_sign(void **state)
{
    fixture *f = *state;
    uint64_t now = keten_now_ms();
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    assert_int_equal(keten_dirbuild_finish(f->draft, now, VALID, &dir, &dir_len), KETEN_OK);
    uint8_t *one = NULL;
    size_t one_len = 0;
    assert_int_equal(
        keten_directory_sign(dir, dir_len, NULL, 0, f->admin_sk[0], &one, &one_len), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, one, one_len, now), KETEN_ERR_THRESHOLD);
    /* The same key again: refused, nothing returned. */
    uint8_t *again = NULL;
    size_t again_len = 0;
    assert_int_equal(
        keten_directory_sign(dir, dir_len, one, one_len, f->admin_sk[0], &again, &again_len),
        KETEN_ERR_DUPLICATE_KEY);
    assert_null(again);
    /* Other directory bytes than the ones signed: refused. */
    uint8_t *other = dup_bytes(dir, dir_len);
    other[dir_len - 1] ^= 0x01;
    assert_int_equal(
        keten_directory_sign(other, dir_len, one, one_len, f->admin_sk[1], &again, &again_len),
        KETEN_ERR_MISMATCH);
    free(other);
    /* Nothing to sign. */
    assert_int_equal(keten_directory_sign(NULL, 0, NULL, 0, f->admin_sk[1], &again, &again_len),
        KETEN_ERR_MALFORMED);
    /* A second administrator: valid. With and without the dir bytes given. */
    uint8_t *two = NULL;
    size_t two_len = 0;
    assert_int_equal(
        keten_directory_sign(dir, dir_len, one, one_len, f->admin_sk[1], &two, &two_len), KETEN_OK);
    assert_int_equal(verify_only(NULL, f->directory, two, two_len, now), KETEN_OK);
    uint8_t *two_b = NULL;
    size_t two_b_len = 0;
    assert_int_equal(
        keten_directory_sign(NULL, 0, one, one_len, f->admin_sk[1], &two_b, &two_b_len), KETEN_OK);
    assert_int_equal(two_b_len, two_len);
    assert_memory_equal(two_b, two, two_len);
    free(two_b);
    free(two);
    free(one);
    free(dir);
}

static void test_anchor_parse(void **state)
{
    fixture *f = *state;
    Keten__Anchor *a = NULL;
    assert_int_equal(keten_directory_anchor_parse(f->anchor_bytes, f->anchor_len, &a), KETEN_OK);
    assert_string_equal(a->network, "testnet");
    assert_int_equal(a->threshold, 2);
    assert_int_equal(a->n_admins, 3);
    keten_pb_free((ProtobufCMessage **)(void *)&a);
    char path[PATH_MAX];
    fixture_path(f, "network.pub", path);
    assert_int_equal(keten_directory_anchor_load(path, &a), KETEN_OK);
    assert_int_equal(a->n_admins, 3);
    keten_pb_free((ProtobufCMessage **)(void *)&a);
    fixture_path(f, "missing.pub", path);
    assert_int_equal(keten_directory_anchor_load(path, &a), KETEN_ERR_NOT_FOUND);

    struct {
        const char *network;
        size_t dup_index; /* 0: none; else admins[dup_index] = admins[0] */
        size_t short_index;
        uint32_t threshold;
        keten_err want;
    } cases[] = {
        { "testnet", 0, 0, 2, KETEN_OK },
        { "testnet", 2, 0, 2, KETEN_ERR_DUPLICATE_KEY },
        { "testnet", 0, 0, 0, KETEN_ERR_INVALID },
        { "testnet", 0, 0, 4, KETEN_ERR_INVALID },
        { "testnet", 0, 1, 2, KETEN_ERR_INVALID },
        { "Test Net", 0, 0, 2, KETEN_ERR_BAD_NAME },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t keys[3][KETEN_SIGN_PK_BYTES];
        ProtobufCBinaryData admins[3];
        for (size_t k = 0; k < 3; k++) {
            memcpy(keys[k], f->admin_pk[k], KETEN_SIGN_PK_BYTES);
            admins[k].data = keys[k];
            admins[k].len = KETEN_SIGN_PK_BYTES;
        }
        if (cases[i].dup_index != 0) {
            memcpy(keys[cases[i].dup_index], keys[0], KETEN_SIGN_PK_BYTES);
        }
        if (cases[i].short_index != 0) {
            admins[cases[i].short_index].len = 31;
        }
        Keten__Anchor in = KETEN__ANCHOR__INIT;
        in.network = (char *)cases[i].network;
        in.admins = admins;
        in.n_admins = 3;
        in.threshold = cases[i].threshold;
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(keten_pb_pack(&in.base, &buf, &len), KETEN_OK);
        assert_int_equal(keten_directory_anchor_parse(buf, len, &a), cases[i].want);
        keten_pb_free((ProtobufCMessage **)(void *)&a);
        free(buf);
    }
    /* Unknown field appended. */
    uint8_t *longer = malloc(f->anchor_len + 3);
    assert_non_null(longer);
    memcpy(longer, f->anchor_bytes, f->anchor_len);
    memcpy(longer + f->anchor_len, "\x98\x06\x01", 3);
    assert_int_equal(keten_directory_anchor_parse(longer, f->anchor_len + 3, &a), KETEN_ERR_NOT_CANONICAL);
    assert_null(a);
    free(longer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v1_verifies_against_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_signatures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_admin_signature_counts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_anchor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_change_needs_new_signatures, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_threshold_change_needs_new_signatures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_listed_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threshold_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_reused_in_two_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_structure_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_field_not_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_previous_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_old_links_may_be_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookups_revoked_and_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quorum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anchor_parse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
