/* checkpoint: C2SP tlog-checkpoint bodies in C2SP signed notes, signed by the
 * broker's log key, C2SP tlog-cosignature/v1 witness lines, and the witness
 * quorum over a real directory. Expected notes and lines are built here
 * independently from the specifications (key ids, messages, base64) and
 * compared byte for byte with the library's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sodium.h>

#include "checkpoint.h"
#include "dirbuild.h"
#include "err.h"
#include "fixture.h"
#include "identity.h"
#include "util.h"

#define EM_DASH "\xe2\x80\x94"
#define NET_ORIGIN "keten/testnet"

/* ---- helpers written from the specifications --------------------------------- */

static void spec_key_id(const char *name, uint8_t type, const uint8_t pk[32], uint8_t id[4])
{
    size_t nl = strlen(name);
    uint8_t *buf = malloc(nl + 2 + 32);
    assert_non_null(buf);
    memcpy(buf, name, nl);
    buf[nl] = '\n';
    buf[nl + 1] = type;
    memcpy(buf + nl + 2, pk, 32);
    uint8_t h[32];
    crypto_hash_sha256(h, buf, nl + 2 + 32);
    memcpy(id, h, 4);
    free(buf);
}

static char *b64(const uint8_t *bin, size_t len)
{
    size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    assert_non_null(s);
    sodium_bin2base64(s, n, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

static char *cat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static char *line_from_payload(const char *name, const uint8_t *payload, size_t len)
{
    char *enc = b64(payload, len);
    size_t n = strlen(name) + strlen(enc) + 16;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, EM_DASH " %s %s\n", name, enc);
    free(enc);
    return s;
}

/* An Ed25519 (type 0x01) note signature line over body: key id of id_pk,
 * signature by sk (they differ in forgery tests). */
static char *spec_log_line(
    const char *body, const char *name, const uint8_t id_pk[32], const uint8_t sk[64])
{
    uint8_t payload[4 + 64];
    spec_key_id(name, 0x01, id_pk, payload);
    assert_int_equal(
        crypto_sign_detached(payload + 4, NULL, (const uint8_t *)body, strlen(body), sk), 0);
    return line_from_payload(name, payload, sizeof payload);
}

/* A cosignature/v1 (type 0x04) line over body at time t. */
static char *spec_cosig_line(
    const char *body, const char *name, const uint8_t id_pk[32], const uint8_t sk[64], uint64_t t)
{
    uint8_t payload[4 + 8 + 64];
    spec_key_id(name, 0x04, id_pk, payload);
    for (int i = 0; i < 8; i++) {
        payload[4 + i] = (uint8_t)(t >> (56 - 8 * i));
    }
    char head[64];
    snprintf(head, sizeof head, "cosignature/v1\ntime %llu\n", (unsigned long long)t);
    char *msg = cat(head, body);
    assert_int_equal(
        crypto_sign_detached(payload + 12, NULL, (const uint8_t *)msg, strlen(msg), sk), 0);
    free(msg);
    return line_from_payload(name, payload, sizeof payload);
}

/* body + "\n" + line */
static char *spec_note(const char *body, const char *line)
{
    char *a = cat(body, "\n");
    char *n = cat(a, line);
    free(a);
    return n;
}

/* ---- keys and a checkpoint ----------------------------------------------------- */

typedef struct keys {
    uint8_t pk[32];
    uint8_t sk[64];
} keys;

static keys log_key, other_key, wit_key;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    crypto_sign_keypair(log_key.pk, log_key.sk);
    crypto_sign_keypair(other_key.pk, other_key.sk);
    crypto_sign_keypair(wit_key.pk, wit_key.sk);
    return 0;
}

static void make_cp(keten_checkpoint *cp, uint64_t size)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->origin, sizeof cp->origin, "%s", NET_ORIGIN);
    cp->size = size;
    for (size_t i = 0; i < 32; i++) {
        cp->root[i] = (uint8_t)i;
        cp->dir_hash[i] = (uint8_t)(0x20 + i);
    }
    cp->root[31] = (uint8_t)(size & 0xff); /* different sizes, different roots */
    cp->dir_version = 3;
}

static void assert_cp_equal(const keten_checkpoint *a, const keten_checkpoint *b)
{
    assert_string_equal(a->origin, b->origin);
    assert_int_equal(a->size, b->size);
    assert_memory_equal(a->root, b->root, 32);
    assert_int_equal(a->dir_version, b->dir_version);
    assert_memory_equal(a->dir_hash, b->dir_hash, 32);
}

static char *signed_note(uint64_t size)
{
    keten_checkpoint cp;
    make_cp(&cp, size);
    /* Through a heap slot: GCC 12's -Wdangling-pointer misreads "return a
     * pointer whose address was passed out" as returning a local's address. */
    char **slot = calloc(1, sizeof *slot);
    assert_non_null(slot);
    assert_int_equal(keten_checkpoint_sign(&cp, "broker", log_key.sk, slot), KETEN_OK);
    char *note = *slot;
    free(slot);
    return note;
}

static keten_err open_note(const char *note, keten_checkpoint *out)
{
    return keten_checkpoint_open(note, strlen(note), "broker", log_key.pk, out);
}

/* ---- body ------------------------------------------------------------------------ */

/* base64 of bytes 0x00..0x1e,0x2a and of 0x20..0x3f, written out. */
#define KAT_BODY                                                                                   \
    "keten/testnet\n"                                                                              \
    "42\n"                                                                                         \
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"                                               \
    "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n"

static void test_body_known_answer(void **state)
{
    (void)state;
    keten_checkpoint cp, back;
    make_cp(&cp, 42);
    char *body = NULL;
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_OK);
    assert_string_equal(body, KAT_BODY);
    assert_int_equal(keten_checkpoint_parse_body(body, strlen(body), &back), KETEN_OK);
    assert_cp_equal(&cp, &back);
    free(body);

    /* Size 0 is "0"; the largest size round-trips. */
    make_cp(&cp, 0);
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_OK);
    assert_non_null(strstr(body, "\n0\n"));
    free(body);
    make_cp(&cp, UINT64_MAX);
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_OK);
    assert_non_null(strstr(body, "\n18446744073709551615\n"));
    assert_int_equal(keten_checkpoint_parse_body(body, strlen(body), &back), KETEN_OK);
    assert_int_equal(back.size, UINT64_MAX);
    free(body);
}

static void test_body_refuses_bad_checkpoint(void **state)
{
    (void)state;
    keten_checkpoint cp;
    char *body = (char *)1;
    make_cp(&cp, 1);
    cp.origin[0] = '\0';
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_ERR_INVALID);
    assert_null(body);
    make_cp(&cp, 1);
    snprintf(cp.origin, sizeof cp.origin, "keten/a\nb");
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_ERR_INVALID);
    make_cp(&cp, 1);
    snprintf(cp.origin, sizeof cp.origin, "keten/\tx");
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_ERR_INVALID);
    make_cp(&cp, 1);
    memset(cp.origin, 'a', sizeof cp.origin); /* no terminating NUL */
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_ERR_INVALID);
    make_cp(&cp, 1);
    cp.dir_version = 0;
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_ERR_INVALID);
    /* The longest origin is fine. */
    make_cp(&cp, 1);
    memset(cp.origin, 'o', KETEN_ORIGIN_MAX);
    cp.origin[KETEN_ORIGIN_MAX] = '\0';
    assert_int_equal(keten_checkpoint_body(&cp, &body), KETEN_OK);
    free(body);
}

/* Bodies that must not parse, each signed properly so that only the parser
 * can refuse it. */
static const char *const bad_bodies[] = {
    /* size with a leading zero, sign, space, empty, overflow, hex */
    NET_ORIGIN "\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42 \nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n0x2a\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    /* root: bad character, no padding, non-canonical bits, 31 and 33 bytes, URL-safe */
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH!o=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHip=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=x\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\n-_-_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    /* directory line: missing, version 0, leading zero, double space, bad hash,
     * wrong keyword, missing hash */
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 0 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 03 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3  ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "Directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\ndirectory 3\n",
    /* an extra extension line; an empty line inside the body */
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\nextra\n",
    NET_ORIGIN "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    /* empty origin */
    "\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
    "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
    /* carriage returns */
    NET_ORIGIN "\r\n42\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\r\n"
               "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\r\n",
    /* invalid UTF-8 (overlong '/') in the origin */
    "keten\xc0\xaftestnet\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHio=\n"
    "directory 3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\n",
};

static void test_malformed_bodies(void **state)
{
    (void)state;
    keten_checkpoint cp;
    /* The well-formed twin of all of them opens. */
    char *line = spec_log_line(KAT_BODY, "broker", log_key.pk, log_key.sk);
    char *note = spec_note(KAT_BODY, line);
    assert_int_equal(open_note(note, &cp), KETEN_OK);
    assert_int_equal(cp.size, 42);
    free(line);
    free(note);

    for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
        const char *body = bad_bodies[i];
        assert_int_equal(keten_checkpoint_parse_body(body, strlen(body), &cp), KETEN_ERR_MALFORMED);
        line = spec_log_line(body, "broker", log_key.pk, log_key.sk);
        note = spec_note(body, line);
        keten_err err = open_note(note, &cp);
        if (err != KETEN_ERR_MALFORMED) {
            fail_msg("bad body %zu: %s (%s)", i, keten_err_str(err), keten_err_detail());
        }
        /* Nor will a witness cosign it. */
        char *cl = (char *)1;
        assert_int_equal(keten_checkpoint_cosignature_sign(note, strlen(note), "w", wit_key.sk, 1, &cl),
            KETEN_ERR_MALFORMED);
        assert_null(cl);
        free(line);
        free(note);
    }

    /* Origin over KETEN_ORIGIN_MAX bytes. */
    char big[KETEN_ORIGIN_MAX + 200];
    memset(big, 'o', KETEN_ORIGIN_MAX + 1);
    snprintf(big + KETEN_ORIGIN_MAX + 1, sizeof big - KETEN_ORIGIN_MAX - 1, "\n%s",
        &KAT_BODY[strlen(NET_ORIGIN) + 1]);
    assert_int_equal(keten_checkpoint_parse_body(big, strlen(big), &cp), KETEN_ERR_MALFORMED);
    /* A body without its final newline, with a NUL, empty. */
    assert_int_equal(
        keten_checkpoint_parse_body(KAT_BODY, strlen(KAT_BODY) - 1, &cp), KETEN_ERR_MALFORMED);
    char withnul[] = KAT_BODY;
    withnul[3] = '\0';
    assert_int_equal(
        keten_checkpoint_parse_body(withnul, sizeof withnul - 1, &cp), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_checkpoint_parse_body("", 0, &cp), KETEN_ERR_MALFORMED);
}

/* ---- signed notes ----------------------------------------------------------------- */

static void test_sign_open_roundtrip(void **state)
{
    (void)state;
    keten_checkpoint cp, back;
    make_cp(&cp, 42);
    char *note = NULL;
    assert_int_equal(keten_checkpoint_sign(&cp, "broker", log_key.sk, &note), KETEN_OK);
    /* Exactly the signed-note format: Ed25519 is deterministic. */
    char *line = spec_log_line(KAT_BODY, "broker", log_key.pk, log_key.sk);
    char *want = spec_note(KAT_BODY, line);
    assert_string_equal(note, want);
    assert_int_equal(open_note(note, &back), KETEN_OK);
    assert_cp_equal(&cp, &back);
    free(line);
    free(want);
    free(note);

    /* Bad key names are refused. */
    note = (char *)1;
    assert_int_equal(keten_checkpoint_sign(&cp, "", log_key.sk, &note), KETEN_ERR_BAD_NAME);
    assert_null(note);
    assert_int_equal(keten_checkpoint_sign(&cp, "a b", log_key.sk, &note), KETEN_ERR_BAD_NAME);
    assert_int_equal(keten_checkpoint_sign(&cp, "a+b", log_key.sk, &note), KETEN_ERR_BAD_NAME);
    assert_int_equal(keten_checkpoint_sign(&cp,
                         "a\xc2\xa0"
                         "b",
                         log_key.sk, &note),
        KETEN_ERR_BAD_NAME);
    /* A key name that is a URL, as the spec recommends, works. */
    assert_int_equal(keten_checkpoint_sign(&cp, NET_ORIGIN, log_key.sk, &note), KETEN_OK);
    assert_int_equal(
        keten_checkpoint_open(note, strlen(note), NET_ORIGIN, log_key.pk, &back), KETEN_OK);
    free(note);
}

static void test_open_rejects_tampering(void **state)
{
    (void)state;
    keten_checkpoint cp;
    char *note = signed_note(42);
    size_t len = strlen(note);
    size_t body_len = strlen(KAT_BODY);

    /* Any changed byte of the body. */
    for (size_t i = 0; i < body_len; i++) {
        if (note[i] == '\n') {
            continue;
        }
        char saved = note[i];
        note[i] = saved == 'A' ? 'B' : 'A';
        keten_err err = open_note(note, &cp);
        if (err != KETEN_ERR_BAD_SIGNATURE) {
            fail_msg("body byte %zu: %s", i, keten_err_str(err));
        }
        note[i] = saved;
    }
    assert_int_equal(open_note(note, &cp), KETEN_OK);

    /* Any flipped bit of the signature (decoded, flipped, re-encoded). */
    const char *b64s = strrchr(note, ' ') + 1;
    uint8_t payload[68];
    size_t got = 0;
    assert_int_equal(sodium_base642bin(payload, sizeof payload, b64s, strlen(b64s) - 1, NULL, &got,
                         NULL, sodium_base64_VARIANT_ORIGINAL),
        0);
    assert_int_equal(got, 68);
    for (size_t bit = 0; bit < 64 * 8; bit += 7) {
        payload[4 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        char *l = line_from_payload("broker", payload, sizeof payload);
        char *forged = spec_note(KAT_BODY, l);
        assert_int_equal(open_note(forged, &cp), KETEN_ERR_BAD_SIGNATURE);
        free(forged);
        free(l);
        payload[4 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* A flipped key id: the line is by some other key; none by ours. */
    payload[0] ^= 1;
    char *l = line_from_payload("broker", payload, sizeof payload);
    char *forged = spec_note(KAT_BODY, l);
    assert_int_equal(open_note(forged, &cp), KETEN_ERR_NOT_FOUND);
    free(forged);
    free(l);

    /* Our name and key id with a payload of the wrong length must verify,
     * and cannot: the note is refused rather than the line ignored. */
    char *sl = line_from_payload("broker", payload, sizeof payload - 1);
    char *shortn = spec_note(KAT_BODY, sl);
    assert_int_equal(open_note(shortn, &cp), KETEN_ERR_NOT_FOUND); /* flipped id: not ours */
    free(shortn);
    free(sl);
    payload[0] ^= 1;
    sl = line_from_payload("broker", payload, sizeof payload - 1);
    shortn = spec_note(KAT_BODY, sl);
    assert_int_equal(open_note(shortn, &cp), KETEN_ERR_BAD_SIGNATURE);
    char *longer = cat(note, sl); /* even next to a good line */
    assert_int_equal(open_note(longer, &cp), KETEN_ERR_BAD_SIGNATURE);
    free(longer);
    free(shortn);
    free(sl);

    /* Truncated anywhere. */
    for (size_t cut = 0; cut < len; cut += 9) {
        keten_err err = keten_checkpoint_open(note, cut, "broker", log_key.pk, &cp);
        assert_true(err == KETEN_ERR_MALFORMED || err == KETEN_ERR_BAD_SIGNATURE);
    }
    free(note);
}

static void test_open_wrong_key(void **state)
{
    (void)state;
    keten_checkpoint cp;
    char *note = signed_note(42);
    size_t len = strlen(note);
    /* Another name, another key: no signature of that key. */
    assert_int_equal(
        keten_checkpoint_open(note, len, "broker2", log_key.pk, &cp), KETEN_ERR_NOT_FOUND);
    assert_int_equal(
        keten_checkpoint_open(note, len, "broker", other_key.pk, &cp), KETEN_ERR_NOT_FOUND);
    /* Our name and key id, but signed by another key. */
    char *bad = spec_log_line(KAT_BODY, "broker", log_key.pk, other_key.sk);
    char *forged = spec_note(KAT_BODY, bad);
    assert_int_equal(open_note(forged, &cp), KETEN_ERR_BAD_SIGNATURE);
    /* A good line next to a bad line of the same key: the note is refused. */
    char *both = cat(note, bad);
    assert_int_equal(open_note(both, &cp), KETEN_ERR_BAD_SIGNATURE);
    /* Lines of unknown keys are ignored, before or after ours. */
    char *other = spec_log_line(KAT_BODY, "someone", other_key.pk, other_key.sk);
    char *with_other = cat(note, other);
    assert_int_equal(open_note(with_other, &cp), KETEN_OK);
    char *first = spec_note(KAT_BODY, other);
    char *line = spec_log_line(KAT_BODY, "broker", log_key.pk, log_key.sk);
    char *other_first = cat(first, line);
    assert_int_equal(open_note(other_first, &cp), KETEN_OK);
    /* A signature of another checkpoint does not carry over. */
    char *note7 = signed_note(7);
    char *sig7 = strstr(note7, EM_DASH);
    char *moved = spec_note(KAT_BODY, sig7);
    assert_int_equal(open_note(moved, &cp), KETEN_ERR_BAD_SIGNATURE);
    free(moved);
    free(note7);
    free(line);
    free(other_first);
    free(first);
    free(with_other);
    free(other);
    free(both);
    free(forged);
    free(bad);
    free(note);
}

static void test_malformed_notes(void **state)
{
    (void)state;
    keten_checkpoint cp;
    char *note = signed_note(42);
    size_t len = strlen(note);
    char *line = strstr(note, EM_DASH);
    char *b64s = strrchr(note, ' ') + 1;

    /* Missing final newline. */
    assert_int_equal(
        keten_checkpoint_open(note, len - 1, "broker", log_key.pk, &cp), KETEN_ERR_MALFORMED);
    /* Missing blank line. */
    char *nosep = cat(KAT_BODY, line);
    assert_int_equal(open_note(nosep, &cp), KETEN_ERR_MALFORMED);
    /* No signature lines. */
    char *nosig = cat(KAT_BODY, "\n");
    assert_int_equal(open_note(nosig, &cp), KETEN_ERR_MALFORMED);

    /* Broken signature lines. */
    /* Each bad line is prefix + (the real signature, if sig) + suffix. */
    static const struct {
        const char *prefix;
        bool sig;
        const char *suffix;
    } bad_lines[] = {
        { "-- broker ", true, "" }, /* ASCII dashes */
        { EM_DASH "broker ", true, "" }, /* no space after the dash */
        { EM_DASH "  ", true, "" }, /* empty name */
        { EM_DASH " bro+ker ", true, "" }, /* '+' in the name */
        { EM_DASH " broker  ", true, "" }, /* two spaces */
        { EM_DASH " broker ", true, " " }, /* trailing space */
        { EM_DASH " broker\t", true, "" }, /* tab */
        { EM_DASH " broker", false, "" }, /* no signature */
        { EM_DASH " broker ", false, "AAAAAA==" }, /* 4 bytes: a key id, no signature */
        { EM_DASH " broker ", true, "!" }, /* not base64 */
        { EM_DASH " broker ", true, "AAAA" }, /* padding in the middle */
    };
    char sigpart[200];
    snprintf(sigpart, sizeof sigpart, "%.*s", (int)(strlen(b64s) - 1), b64s);
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        char l[400];
        snprintf(l, sizeof l, "%s%s%s", bad_lines[i].prefix, bad_lines[i].sig ? sigpart : "",
            bad_lines[i].suffix);
        char *l2 = cat(l, "\n");
        char *n = spec_note(KAT_BODY, l2);
        keten_err err = open_note(n, &cp);
        if (err != KETEN_ERR_MALFORMED) {
            fail_msg("bad line %zu: %s", i, keten_err_str(err));
        }
        /* A bad line anywhere spoils the note, even after a good one. */
        char *after = cat(note, l2);
        assert_int_equal(open_note(after, &cp), KETEN_ERR_MALFORMED);
        free(after);
        free(n);
        free(l2);
    }

    /* A NUL byte, a control character, invalid UTF-8. */
    char *copy = strdup(note);
    copy[2] = '\0';
    assert_int_equal(
        keten_checkpoint_open(copy, len, "broker", log_key.pk, &cp), KETEN_ERR_MALFORMED);
    copy[2] = '\x07';
    assert_int_equal(
        keten_checkpoint_open(copy, len, "broker", log_key.pk, &cp), KETEN_ERR_MALFORMED);
    copy[2] = '\xff';
    assert_int_equal(
        keten_checkpoint_open(copy, len, "broker", log_key.pk, &cp), KETEN_ERR_MALFORMED);
    free(copy);

    /* Over the size cap: refused before anything else. */
    size_t big_len = (size_t)KETEN_CHECKPOINT_MAX + 1;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 'a', big_len);
    memcpy(big, note, len);
    big[big_len - 1] = '\n';
    assert_int_equal(
        keten_checkpoint_open(big, big_len, "broker", log_key.pk, &cp), KETEN_ERR_TOO_LARGE);
    assert_int_equal(keten_checkpoint_parse_body(big, big_len, &cp), KETEN_ERR_TOO_LARGE);
    uint64_t t;
    assert_int_equal(
        keten_checkpoint_cosignature_verify(big, big_len, "w", wit_key.pk, &t), KETEN_ERR_TOO_LARGE);
    free(big);

    free(nosig);
    free(nosep);
    free(note);
}

/* ---- cosignatures ------------------------------------------------------------------- */

static void test_cosignature_roundtrip(void **state)
{
    (void)state;
    char *note = signed_note(42);
    size_t len = strlen(note);
    const uint64_t t = 1679315147;
    char *line = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "gemeente-a", wit_key.sk, t, &line), KETEN_OK);
    /* Exactly tlog-cosignature/v1. */
    char *want = spec_cosig_line(KAT_BODY, "gemeente-a", wit_key.pk, wit_key.sk, t);
    assert_string_equal(line, want);

    char *cosigned = NULL;
    assert_int_equal(keten_checkpoint_add_line(note, len, line, &cosigned), KETEN_OK);
    char *expect = cat(note, want);
    assert_string_equal(cosigned, expect);

    uint64_t got = 0;
    assert_int_equal(
        keten_checkpoint_cosignature_verify(cosigned, strlen(cosigned), "gemeente-a", wit_key.pk, &got),
        KETEN_OK);
    assert_int_equal(got, t);
    /* The log's signature still opens; the cosignature is not the log's. */
    keten_checkpoint cp;
    assert_int_equal(open_note(cosigned, &cp), KETEN_OK);
    assert_int_equal(
        keten_checkpoint_open(cosigned, strlen(cosigned), "gemeente-a", wit_key.pk, &cp),
        KETEN_ERR_NOT_FOUND);
    /* And the log's Ed25519 line is not a cosignature. */
    assert_int_equal(
        keten_checkpoint_cosignature_verify(cosigned, strlen(cosigned), "broker", log_key.pk, &got),
        KETEN_ERR_NOT_FOUND);
    /* Time 0 and the largest allowed time work; 2^63 does not. */
    free(line);
    assert_int_equal(keten_checkpoint_cosignature_sign(note, len, "w0", wit_key.sk, 0, &line), KETEN_OK);
    free(line);
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "wmax", wit_key.sk, (uint64_t)INT64_MAX, &line),
        KETEN_OK);
    free(line);
    line = (char *)1;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "wbig", wit_key.sk, (uint64_t)INT64_MAX + 1, &line),
        KETEN_ERR_INVALID);
    assert_null(line);
    free(expect);
    free(cosigned);
    free(want);
    free(note);
}

static void test_cosignature_rejects(void **state)
{
    (void)state;
    char *note = signed_note(42);
    size_t len = strlen(note);
    uint64_t got;
    /* No cosignature at all. */
    assert_int_equal(
        keten_checkpoint_cosignature_verify(note, len, "gemeente-a", wit_key.pk, &got), KETEN_ERR_NOT_FOUND);

    /* A cosignature over another checkpoint, attached to this one. */
    char *note7 = signed_note(7);
    char *line7 = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note7, strlen(note7), "gemeente-a", wit_key.sk, 100, &line7),
        KETEN_OK);
    char *moved = cat(note, line7);
    assert_int_equal(keten_checkpoint_cosignature_verify(moved, strlen(moved), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);

    /* Another witness key: not found; our key id signed by another key: bad. */
    char *line = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "gemeente-a", wit_key.sk, 100, &line), KETEN_OK);
    char *good = cat(note, line);
    assert_int_equal(keten_checkpoint_cosignature_verify(good, strlen(good), "gemeente-a", other_key.pk, &got),
        KETEN_ERR_NOT_FOUND);
    assert_int_equal(keten_checkpoint_cosignature_verify(good, strlen(good), "gemeente-b", wit_key.pk, &got),
        KETEN_ERR_NOT_FOUND);
    char *forged_line = spec_cosig_line(KAT_BODY, "gemeente-a", wit_key.pk, other_key.sk, 100);
    char *forged = cat(note, forged_line);
    assert_int_equal(
        keten_checkpoint_cosignature_verify(forged, strlen(forged), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);

    /* A tampered timestamp, and one over 2^63 - 1 signed as such. */
    const char *b64s = strrchr(line, ' ') + 1;
    uint8_t payload[76];
    size_t plen = 0;
    assert_int_equal(sodium_base642bin(payload, sizeof payload, b64s, strlen(b64s) - 1, NULL, &plen,
                         NULL, sodium_base64_VARIANT_ORIGINAL),
        0);
    assert_int_equal(plen, 76);
    payload[11] ^= 1; /* 100 -> 101 */
    char *tl = line_from_payload("gemeente-a", payload, sizeof payload);
    char *tampered = cat(note, tl);
    assert_int_equal(
        keten_checkpoint_cosignature_verify(tampered, strlen(tampered), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);
    char *huge_line
        = spec_cosig_line(KAT_BODY, "gemeente-a", wit_key.pk, wit_key.sk, (uint64_t)INT64_MAX + 1);
    char *huge = cat(note, huge_line);
    assert_int_equal(keten_checkpoint_cosignature_verify(huge, strlen(huge), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);
    /* Name and cosignature key id with a short payload: a bad cosignature. */
    char *shl = line_from_payload("gemeente-a", payload, sizeof payload - 1);
    char *shn = cat(note, shl);
    assert_int_equal(keten_checkpoint_cosignature_verify(shn, strlen(shn), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);
    free(shn);
    free(shl);
    /* The message must be exactly "cosignature/v1\ntime T\n" + body: a line
     * signed over the body alone (an Ed25519 note signature under the
     * cosignature key id) does not verify. */
    uint8_t p2[76];
    spec_key_id("gemeente-a", 0x04, wit_key.pk, p2);
    memset(p2 + 4, 0, 8);
    assert_int_equal(crypto_sign_detached(
                         p2 + 12, NULL, (const uint8_t *)KAT_BODY, strlen(KAT_BODY), wit_key.sk),
        0);
    char *bl = line_from_payload("gemeente-a", p2, sizeof p2);
    char *bare = cat(note, bl);
    assert_int_equal(keten_checkpoint_cosignature_verify(bare, strlen(bare), "gemeente-a", wit_key.pk, &got),
        KETEN_ERR_BAD_SIGNATURE);

    free(bare);
    free(bl);
    free(huge);
    free(huge_line);
    free(tampered);
    free(tl);
    free(forged);
    free(forged_line);
    free(good);
    free(line);
    free(moved);
    free(line7);
    free(note7);
    free(note);
}

static void test_add_line(void **state)
{
    (void)state;
    char *note = signed_note(42);
    size_t len = strlen(note);
    char *line = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "gemeente-a", wit_key.sk, 5, &line), KETEN_OK);
    char *one = NULL;
    assert_int_equal(keten_checkpoint_add_line(note, len, line, &one), KETEN_OK);

    /* A second line of the same name: refused, whatever it says. */
    char *two = (char *)1;
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), line, &two), KETEN_ERR_EXISTS);
    assert_null(two);
    char *line2 = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "gemeente-a", wit_key.sk, 6, &line2), KETEN_OK);
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), line2, &two), KETEN_ERR_EXISTS);
    char *blog = spec_log_line(KAT_BODY, "broker", other_key.pk, other_key.sk);
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), blog, &two), KETEN_ERR_EXISTS);

    /* Without its final newline a line is still one line. */
    char *nonl = strdup(line2);
    nonl[strlen(nonl) - 1] = '\0';
    char *renamed = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(note, len, "politie-b", wit_key.sk, 6, &renamed), KETEN_OK);
    renamed[strlen(renamed) - 1] = '\0';
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), renamed, &two), KETEN_OK);
    uint64_t t = 0;
    assert_int_equal(
        keten_checkpoint_cosignature_verify(two, strlen(two), "politie-b", wit_key.pk, &t), KETEN_OK);
    assert_int_equal(t, 6);
    free(two);

    /* Not a signature line, two lines, an empty line, a bad note. */
    two = NULL;
    assert_int_equal(
        keten_checkpoint_add_line(one, strlen(one), "hello\n", &two), KETEN_ERR_MALFORMED);
    char *dbl = cat(renamed, "\n" EM_DASH " x AAAAAAAA\n");
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), dbl, &two), KETEN_ERR_MALFORMED);
    assert_int_equal(keten_checkpoint_add_line(one, strlen(one), "\n", &two), KETEN_ERR_MALFORMED);
    assert_int_equal(
        keten_checkpoint_add_line(KAT_BODY, strlen(KAT_BODY), line, &two), KETEN_ERR_MALFORMED);
    assert_null(two);

    /* Many lines are fine (the spec asks for at least 16), up to the size cap. */
    char *cur = strdup(note);
    size_t n_added = 0;
    keten_err err = KETEN_OK;
    while (err == KETEN_OK) {
        char name[32];
        snprintf(name, sizeof name, "witness-%zu", n_added);
        char *l = spec_cosig_line(KAT_BODY, name, wit_key.pk, wit_key.sk, n_added);
        char *next = NULL;
        err = keten_checkpoint_add_line(cur, strlen(cur), l, &next);
        free(l);
        if (err == KETEN_OK) {
            free(cur);
            cur = next;
            n_added++;
        }
    }
    assert_int_equal(err, KETEN_ERR_TOO_LARGE);
    assert_true(n_added > 16);
    assert_true(strlen(cur) <= KETEN_CHECKPOINT_MAX);
    assert_int_equal(
        keten_checkpoint_cosignature_verify(cur, strlen(cur), "witness-16", wit_key.pk, &t), KETEN_OK);
    assert_int_equal(t, 16);
    keten_checkpoint cp;
    assert_int_equal(open_note(cur, &cp), KETEN_OK);
    free(cur);

    free(dbl);
    free(renamed);
    free(nonl);
    free(blog);
    free(line2);
    free(one);
    free(line);
    free(note);
}

/* ---- the witness quorum over a real directory ----------------------------------------- */

static const char *const quorum_specs[] = {
    "broker:broker",
    "gemeente-a:municipality",
    "politie-b:police",
    "belasting-c:tax",
    "woning-d:housing",
    NULL,
};

/* The broker's checkpoint note signed with its log key. */
static char *broker_note(const fixture *f, uint64_t size)
{
    keten_identity *b = fixture_node(f, "broker");
    assert_non_null(b);
    assert_true(b->has_log_key);
    keten_checkpoint cp;
    make_cp(&cp, size);
    memcpy(cp.dir_hash, keten_directory_hash(f->directory), 32);
    cp.dir_version = keten_directory_version(f->directory);
    char **slot = calloc(1, sizeof *slot);
    assert_non_null(slot);
    assert_int_equal(keten_checkpoint_sign(&cp, b->id, b->log_sk, slot), KETEN_OK);
    char *note = *slot;
    free(slot);
    return note;
}

/* note + a cosignature line of `id` made with sk. */
static char *with_cosig(char *note, const char *id, const uint8_t *sk, uint64_t t)
{
    char *line = NULL;
    assert_int_equal(keten_checkpoint_cosignature_sign(note, strlen(note), id, sk, t, &line), KETEN_OK);
    char *out = cat(note, line); /* by hand: also used for duplicate names */
    free(line);
    free(note);
    return out;
}

static void expect_witnesses(const fixture *f, const char *note, size_t want, bool want_w)
{
    size_t count = 99;
    bool w = !want_w;
    assert_int_equal(
        keten_checkpoint_witnesses(note, strlen(note), f->directory, &count, &w), KETEN_OK);
    assert_int_equal(count, want);
    assert_int_equal(w, want_w);
}

static void test_witness_quorum(void **state)
{
    (void)state;
    fixture *f = fixture_new(3, 2, quorum_specs);
    assert_int_equal(keten_directory_partner_count(f->directory), 4);
    assert_int_equal(keten_directory_quorum(f->directory), 3);
    keten_identity *a = fixture_node(f, "gemeente-a");
    keten_identity *b = fixture_node(f, "politie-b");
    keten_identity *c = fixture_node(f, "belasting-c");
    keten_identity *d = fixture_node(f, "woning-d");
    keten_identity *brk = fixture_node(f, "broker");

    char *note = broker_note(f, 100);
    expect_witnesses(f, note, 0, false);
    note = with_cosig(note, a->id, a->sign_sk, 1);
    expect_witnesses(f, note, 1, false);
    note = with_cosig(note, b->id, b->sign_sk, 2);
    expect_witnesses(f, note, 2, false);
    /* Not counted: the broker (by either of its keys), a non-member, a
     * partner's name with another key, a cosignature of another checkpoint. */
    char *n2 = strdup(note);
    n2 = with_cosig(n2, brk->id, brk->sign_sk, 3);
    n2 = with_cosig(n2, "broker", brk->log_sk, 3);
    keten_identity *outsider = NULL;
    assert_int_equal(
        keten_identity_generate("buiten-x", "police", "Outsider", false, &outsider), KETEN_OK);
    n2 = with_cosig(n2, outsider->id, outsider->sign_sk, 3);
    n2 = with_cosig(n2, c->id, outsider->sign_sk, 3);
    char *other = broker_note(f, 101);
    char *line_other = NULL;
    assert_int_equal(
        keten_checkpoint_cosignature_sign(other, strlen(other), d->id, d->sign_sk, 3, &line_other), KETEN_OK);
    char *n3 = cat(n2, line_other);
    expect_witnesses(f, n3, 2, false);
    /* A forged line under c's name and key id (signed by another key). */
    char *body_end = strstr(n3, "\n\n");
    *body_end = '\0';
    char *body = cat(n3, "\n");
    *body_end = '\n';
    char *forged_line = spec_cosig_line(body, c->id, c->sign_pk, outsider->sign_sk, 3);
    char *n4 = cat(n3, forged_line);
    expect_witnesses(f, n4, 2, false);

    /* Two lines by the same partner count once. */
    char *dup = strdup(note);
    dup = with_cosig(dup, a->id, a->sign_sk, 9);
    expect_witnesses(f, dup, 2, false);

    /* The third distinct partner makes the quorum, the fourth adds to it. */
    note = with_cosig(note, c->id, c->sign_sk, 4);
    expect_witnesses(f, note, 3, true);
    /* A partner with a valid line still counts next to a bad line of its own. */
    char *n5 = cat(note, forged_line);
    expect_witnesses(f, n5, 3, true);
    note = with_cosig(note, d->id, d->sign_sk, 5);
    expect_witnesses(f, note, 4, true);

    /* A note that does not parse is an error, not "0 witnesses". */
    size_t count = 7;
    bool w = true;
    assert_int_equal(keten_checkpoint_witnesses(note, strlen(note) - 1, f->directory, &count, &w),
        KETEN_ERR_MALFORMED);
    assert_int_equal(count, 0);
    assert_false(w);

    /* After d is revoked, its cosignature no longer counts (3 partners, quorum 2). */
    assert_int_equal(keten_dirbuild_revoke(f->draft, d->id, "test", keten_now_ms()), KETEN_OK);
    size_t dlen = 0;
    free(fixture_publish(f, &dlen));
    assert_int_equal(keten_directory_quorum(f->directory), 2);
    expect_witnesses(f, note, 3, true);
    char *ab = broker_note(f, 200);
    ab = with_cosig(ab, a->id, a->sign_sk, 1);
    ab = with_cosig(ab, d->id, d->sign_sk, 1);
    expect_witnesses(f, ab, 1, false);
    ab = with_cosig(ab, b->id, b->sign_sk, 1);
    expect_witnesses(f, ab, 2, true);

    free(ab);
    free(n5);
    free(dup);
    free(n4);
    free(forged_line);
    free(body);
    free(n3);
    free(line_other);
    free(other);
    keten_identity_destroy(&outsider);
    free(n2);
    free(note);
    fixture_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_known_answer),
        cmocka_unit_test(test_body_refuses_bad_checkpoint),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_sign_open_roundtrip),
        cmocka_unit_test(test_open_rejects_tampering),
        cmocka_unit_test(test_open_wrong_key),
        cmocka_unit_test(test_malformed_notes),
        cmocka_unit_test(test_cosignature_roundtrip),
        cmocka_unit_test(test_cosignature_rejects),
        cmocka_unit_test(test_add_line),
        cmocka_unit_test(test_witness_quorum),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
