#include "checkpoint.h"
#include "sha256.h"
#include "sigcache.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Formats (c2sp.org/signed-note, tlog-checkpoint, tlog-cosignature):
 *
 *   note      = body "\n" 1*sigline
 *   body      = origin "\n" size "\n" b64(root) "\n" "directory " version " " b64(hash) "\n"
 *   sigline   = U+2014 " " key-name " " b64(key-id(4) || signature) "\n"
 *
 * The body is separated from the signatures by the last empty line. keten's
 * checkpoints have exactly one extension line, the directory line, so that
 * a body has one reading and re-serializes to the same bytes.
 */

#define SIG_PREFIX "\xe2\x80\x94 " /* U+2014 EM DASH, then a space */
#define SIG_PREFIX_LEN 4
#define TYPE_ED25519 0x01
#define TYPE_COSIG_V1 0x04
#define KEY_ID_BYTES 4
#define TIMESTAMP_BYTES 8
#define KEY_NAME_MAX 256
#define ED25519_PAYLOAD (KEY_ID_BYTES + KETEN_SIG_BYTES) /* 68 */
#define COSIG_PAYLOAD (KEY_ID_BYTES + TIMESTAMP_BYTES + KETEN_SIG_BYTES) /* 76 */
#define COSIG_HEADER "cosignature/v1\ntime "
#define DIRECTORY_PREFIX "directory "
#define B64_HASH_LEN 44 /* standard base64 of 32 bytes, with padding */
#define DEC_U64_MAX 20 /* digits of 2^64 - 1 */
#define TIMESTAMP_MAX ((uint64_t)INT64_MAX)

typedef struct sigline {
    const char *name;
    size_t name_len;
    const uint8_t *payload; /* decoded: key id (4) || signature */
    size_t payload_len;
} sigline;

typedef struct note {
    const char *body;
    size_t body_len;
    sigline *lines;
    size_t n_lines;
    uint8_t *payloads; /* storage of the lines' payloads */
} note;

static void note_free(note *n)
{
    free(n->lines);
    free(n->payloads);
    n->lines = NULL;
    n->payloads = NULL;
    n->n_lines = 0;
}

/* ---- small parsers --------------------------------------------------------- */

/* Decode one UTF-8 sequence at s (n bytes left): strict (no overlongs, no
 * surrogates, at most U+10FFFF). Returns its length, 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) {
        return 0;
    }
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    uint32_t min;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *cp = v;
    return len;
}

/* Valid UTF-8 with no control character below U+0020 other than newline
 * (signed-note) and no NUL. */
static keten_err check_text(const char *s, size_t len, const char *what)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t l = utf8_decode(p + i, len - i, &cp);
        if (l == 0) {
            return keten_err_set(
                KETEN_ERR_MALFORMED, "%s is not valid UTF-8 (at byte %zu)", what, i);
        }
        if (cp < 0x20 && cp != '\n') {
            return keten_err_set(KETEN_ERR_MALFORMED,
                "%s contains control character 0x%02x at byte %zu", what, (unsigned)cp, i);
        }
        i += l;
    }
    return KETEN_OK;
}

/* Unicode white space (Go's unicode.IsSpace, as the note spec's reference
 * implementation uses). */
static bool is_unicode_space(uint32_t cp)
{
    switch (cp) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* Key names: non-empty, no Unicode spaces, no '+', valid UTF-8, capped. */
static bool key_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > KEY_NAME_MAX) {
        return false;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t l = utf8_decode(p + i, len - i, &cp);
        if (l == 0 || cp < 0x20 || cp == 0x7f || cp == '+' || is_unicode_space(cp)) {
            return false;
        }
        i += l;
    }
    return true;
}

/* Decimal without leading zeros ("0" alone is fine), fits in uint64. */
static bool parse_dec(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > DEC_U64_MAX || (len > 1 && s[0] == '0')) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Standard, padded, canonical base64 of exactly `want` bytes into out
 * (want == 0: any length >= 1, up to out_max; *out_len receives it). */
static bool parse_b64(
    const char *s, size_t len, uint8_t *out, size_t out_max, size_t want, size_t *out_len)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > out_max + 2) {
        return false;
    }
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, out_max, s, len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL)
        != 0) {
        return false;
    }
    if (end != s + len || got == 0 || (want != 0 && got != want)) {
        return false;
    }
    /* Canonical: re-encoding gives the same text (no stray bits, padding). */
    size_t enc_len = sodium_base64_encoded_len(got, sodium_base64_VARIANT_ORIGINAL);
    char *enc = malloc(enc_len);
    if (enc == NULL) {
        return false;
    }
    sodium_bin2base64(enc, enc_len, out, got, sodium_base64_VARIANT_ORIGINAL);
    bool same = strlen(enc) == len && memcmp(enc, s, len) == 0;
    free(enc);
    if (out_len != NULL) {
        *out_len = got;
    }
    return same;
}

static void key_id(const char *name, size_t name_len, uint8_t type,
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], uint8_t id[KEY_ID_BYTES])
{
    static const uint8_t nl = '\n';
    uint8_t h[KETEN_SHA256_BYTES];
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, (const uint8_t *)name, name_len);
    keten_sha256_update(&st, &nl, 1);
    keten_sha256_update(&st, &type, 1);
    keten_sha256_update(&st, pk, KETEN_SIGN_PK_BYTES);
    keten_sha256_final(&st, h);
    memcpy(id, h, KEY_ID_BYTES);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

/* ---- signature lines and notes ---------------------------------------------- */

/* One signature line without its newline; its decoded payload goes to buf
 * (at least len bytes). */
static keten_err parse_sigline(
    const char *s, size_t len, size_t line_no, uint8_t *buf, size_t buf_len, sigline *out)
{
    if (len < SIG_PREFIX_LEN || memcmp(s, SIG_PREFIX, SIG_PREFIX_LEN) != 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "signature line %zu does not start with an em dash and a space", line_no);
    }
    const char *name = s + SIG_PREFIX_LEN;
    size_t rest = len - SIG_PREFIX_LEN;
    const char *sp = memchr(name, ' ', rest);
    if (sp == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "signature line %zu has no space between key name and signature", line_no);
    }
    size_t name_len = (size_t)(sp - name);
    if (!key_name_valid(name, name_len)) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "signature line %zu has an empty or invalid key name", line_no);
    }
    const char *b64 = sp + 1;
    size_t b64_len = rest - name_len - 1;
    size_t got = 0;
    if (!parse_b64(b64, b64_len, buf, buf_len, 0, &got) || got <= KEY_ID_BYTES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "signature line %zu is not standard base64 of a key id and a signature", line_no);
    }
    out->name = name;
    out->name_len = name_len;
    out->payload = buf;
    out->payload_len = got;
    return KETEN_OK;
}

/* Split a signed note into body and well-formed signature lines. */
static keten_err parse_note(const char *s, size_t len, note *out)
{
    memset(out, 0, sizeof *out);
    if (s == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no checkpoint note given");
    }
    if (len > KETEN_CHECKPOINT_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "checkpoint note of %zu bytes is over the limit of %u bytes", len,
            KETEN_CHECKPOINT_MAX);
    }
    if (memchr(s, '\0', len) != NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint note contains a NUL byte");
    }
    keten_err err = check_text(s, len, "checkpoint note");
    if (err != KETEN_OK) {
        return err;
    }
    if (len == 0 || s[len - 1] != '\n') {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint note does not end with a newline");
    }
    /* The body ends at the last empty line. */
    size_t sep = 0;
    bool found = false;
    for (size_t i = len - 1; i > 0; i--) {
        if (s[i] == '\n' && s[i - 1] == '\n') {
            sep = i - 1;
            found = true;
            break;
        }
    }
    if (!found) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint note has no empty line between its text and its signatures");
    }
    const char *sigs = s + sep + 2;
    size_t sigs_len = len - sep - 2;
    if (sigs_len == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint note has no signature lines");
    }
    size_t n_lines = 0;
    for (size_t i = 0; i < sigs_len; i++) {
        n_lines += sigs[i] == '\n';
    }
    /* Each payload is shorter than its base64 text: sigs_len bytes hold all. */
    out->lines = calloc(n_lines, sizeof *out->lines);
    out->payloads = malloc(sigs_len);
    if (out->lines == NULL || out->payloads == NULL) {
        note_free(out);
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory parsing a checkpoint note");
    }
    const char *p = sigs;
    const char *end = sigs + sigs_len;
    size_t used = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        /* s ends in '\n', so nl != NULL */
        sigline *l = &out->lines[out->n_lines];
        err = parse_sigline(
            p, (size_t)(nl - p), out->n_lines + 1, out->payloads + used, sigs_len - used, l);
        if (err != KETEN_OK) {
            note_free(out);
            return err;
        }
        used += l->payload_len;
        out->n_lines++;
        p = nl + 1;
    }
    out->body = s;
    out->body_len = sep + 1;
    return KETEN_OK;
}

static bool line_named(const sigline *l, const char *name)
{
    size_t n = strlen(name);
    return l->name_len == n && memcmp(l->name, name, n) == 0;
}

/* ---- body ------------------------------------------------------------------ */

/* Next line of s[*pos..len) (without the newline); false at the end. */
static bool next_line(const char *s, size_t len, size_t *pos, const char **line, size_t *line_len)
{
    if (*pos >= len) {
        return false;
    }
    const char *nl = memchr(s + *pos, '\n', len - *pos);
    if (nl == NULL) {
        return false; /* the caller checked the final newline */
    }
    *line = s + *pos;
    *line_len = (size_t)(nl - (s + *pos));
    *pos = (size_t)(nl - s) + 1;
    return true;
}

static keten_err parse_body(const char *body, size_t len, keten_checkpoint *out)
{
    if (body == NULL || out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no checkpoint body or output given");
    }
    if (len > KETEN_CHECKPOINT_MAX) {
        return keten_err_set(KETEN_ERR_TOO_LARGE,
            "checkpoint body of %zu bytes is over the limit of %u bytes", len,
            KETEN_CHECKPOINT_MAX);
    }
    if (memchr(body, '\0', len) != NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint body contains a NUL byte");
    }
    keten_err err = check_text(body, len, "checkpoint body");
    if (err != KETEN_OK) {
        return err;
    }
    if (len == 0 || body[len - 1] != '\n') {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint body does not end with a newline");
    }
    keten_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    size_t pos = 0;
    const char *line;
    size_t ll;

    /* 1: origin */
    if (!next_line(body, len, &pos, &line, &ll) || ll == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint line 1 (origin) is empty");
    }
    if (ll > KETEN_ORIGIN_MAX) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint line 1 (origin) is %zu bytes long, at most %d are allowed", ll,
            KETEN_ORIGIN_MAX);
    }
    memcpy(cp.origin, line, ll);
    cp.origin[ll] = '\0';

    /* 2: tree size */
    if (!next_line(body, len, &pos, &line, &ll) || !parse_dec(line, ll, &cp.size)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint line 2 (tree size) is not a decimal number without leading zeros");
    }

    /* 3: root hash */
    if (!next_line(body, len, &pos, &line, &ll) || ll != B64_HASH_LEN
        || !parse_b64(line, ll, cp.root, sizeof cp.root, KETEN_HASH_BYTES, NULL)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint line 3 (root hash) is not standard base64 of %d bytes", KETEN_HASH_BYTES);
    }

    /* 4: "directory <version> <base64 hash>" */
    if (!next_line(body, len, &pos, &line, &ll) || ll == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint has no line 4; keten requires the \"directory <version> <hash>\" "
            "extension line");
    }
    size_t plen = strlen(DIRECTORY_PREFIX);
    const char *sp = ll > plen ? memchr(line + plen, ' ', ll - plen) : NULL;
    if (ll <= plen || memcmp(line, DIRECTORY_PREFIX, plen) != 0 || sp == NULL) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "checkpoint line 4 is not \"directory <version> <base64 hash>\"");
    }
    const char *ver = line + plen;
    size_t ver_len = (size_t)(sp - ver);
    const char *hash = sp + 1;
    size_t hash_len = ll - plen - ver_len - 1;
    if (!parse_dec(ver, ver_len, &cp.dir_version) || cp.dir_version == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint line 4: directory version is not a decimal number >= 1");
    }
    if (hash_len != B64_HASH_LEN
        || !parse_b64(hash, hash_len, cp.dir_hash, sizeof cp.dir_hash, KETEN_HASH_BYTES, NULL)) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint line 4: directory hash is not standard base64 of %d bytes",
            KETEN_HASH_BYTES);
    }

    /* Nothing else: one reading, one serialization. */
    if (pos != len) {
        if (next_line(body, len, &pos, &line, &ll) && ll == 0) {
            return keten_err_set(KETEN_ERR_MALFORMED, "checkpoint line 5 is empty");
        }
        return keten_err_set(KETEN_ERR_MALFORMED,
            "checkpoint has extension lines after the directory line; keten allows none");
    }
    *out = cp;
    return KETEN_OK;
}

keten_err keten_checkpoint_parse_body(const char *body, size_t len, keten_checkpoint *out)
{
    return parse_body(body, len, out);
}

keten_err keten_checkpoint_body(const keten_checkpoint *cp, char **out)
{
    if (out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_body: no output pointer");
    }
    *out = NULL;
    if (cp == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_body: no checkpoint");
    }
    size_t olen = strnlen(cp->origin, sizeof cp->origin);
    if (olen == 0 || olen > KETEN_ORIGIN_MAX) {
        return keten_err_set(
            KETEN_ERR_INVALID, "checkpoint origin must be 1 to %d bytes", KETEN_ORIGIN_MAX);
    }
    if (memchr(cp->origin, '\n', olen) != NULL || check_text(cp->origin, olen, "origin")) {
        return keten_err_set(KETEN_ERR_INVALID,
            "checkpoint origin must be one line of UTF-8 text without control characters");
    }
    if (cp->dir_version == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "checkpoint directory version must be >= 1");
    }
    char root[B64_HASH_LEN + 1];
    char dir[B64_HASH_LEN + 1];
    sodium_bin2base64(
        root, sizeof root, cp->root, KETEN_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(
        dir, sizeof dir, cp->dir_hash, KETEN_HASH_BYTES, sodium_base64_VARIANT_ORIGINAL);
    char *s = NULL;
    int n = asprintf(&s, "%s\n%" PRIu64 "\n%s\n" DIRECTORY_PREFIX "%" PRIu64 " %s\n", cp->origin,
        cp->size, root, cp->dir_version, dir);
    if (n < 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory formatting a checkpoint");
    }
    /* What we write must read back as the same checkpoint. */
    keten_checkpoint back;
    keten_err err = parse_body(s, (size_t)n, &back);
    if (err != KETEN_OK) {
        free(s);
        return err;
    }
    if (strcmp(back.origin, cp->origin) != 0 || back.size != cp->size
        || memcmp(back.root, cp->root, KETEN_HASH_BYTES) != 0 || back.dir_version != cp->dir_version
        || memcmp(back.dir_hash, cp->dir_hash, KETEN_HASH_BYTES) != 0) {
        free(s);
        return keten_err_set(KETEN_ERR_INVALID, "checkpoint does not read back as written");
    }
    *out = s;
    return KETEN_OK;
}

/* ---- the log's signature ------------------------------------------------------ */

/* Format "— name base64(payload)\n". */
static keten_err format_line(
    const char *name, const uint8_t *payload, size_t payload_len, char **out)
{
    size_t b64_len = sodium_base64_encoded_len(payload_len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64_len);
    if (b64 == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory formatting a signature line");
    }
    sodium_bin2base64(b64, b64_len, payload, payload_len, sodium_base64_VARIANT_ORIGINAL);
    char *s = NULL;
    int n = asprintf(&s, SIG_PREFIX "%s %s\n", name, b64);
    free(b64);
    if (n < 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory formatting a signature line");
    }
    *out = s;
    return KETEN_OK;
}

/* Check every line of key_name with the Ed25519 key id of pk. */
static keten_err verify_log_sig(
    const note *nt, const char *key_name, const uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    uint8_t id[KEY_ID_BYTES];
    key_id(key_name, strlen(key_name), TYPE_ED25519, pk, id);
    size_t good = 0;
    for (size_t i = 0; i < nt->n_lines; i++) {
        const sigline *l = &nt->lines[i];
        if (!line_named(l, key_name) || memcmp(l->payload, id, KEY_ID_BYTES) != 0) {
            continue; /* another key or type: not ours to judge (signed-note) */
        }
        /* Name and key id match: this line must verify. */
        if (l->payload_len != ED25519_PAYLOAD
            || !keten_sigcache_verify(
                l->payload + KEY_ID_BYTES, (const uint8_t *)nt->body, nt->body_len, pk)) {
            return keten_err_set(KETEN_ERR_BAD_SIGNATURE,
                "the checkpoint signature of key %s does not verify", key_name);
        }
        good++;
    }
    if (good == 0) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "the checkpoint carries no signature by key %s with the expected key id", key_name);
    }
    return KETEN_OK;
}

keten_err keten_checkpoint_open(const char *note_text, size_t len, const char *key_name,
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], keten_checkpoint *out)
{
    if (key_name == NULL || pk == NULL || out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_open: missing argument");
    }
    note nt;
    keten_err err = parse_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    err = verify_log_sig(&nt, key_name, pk);
    if (err == KETEN_OK) {
        err = parse_body(nt.body, nt.body_len, out);
    }
    note_free(&nt);
    return err;
}

keten_err keten_checkpoint_sign(const keten_checkpoint *cp, const char *key_name,
    const uint8_t sk[static KETEN_SIGN_SK_BYTES], char **note_out)
{
    if (note_out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_sign: no output pointer");
    }
    *note_out = NULL;
    if (key_name == NULL || sk == NULL || !key_name_valid(key_name, strlen(key_name))) {
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "checkpoint key name must be non-empty, without spaces or '+'");
    }
    char *body = NULL;
    char *line = NULL;
    char *s = NULL;
    keten_err err = keten_checkpoint_body(cp, &body);
    if (err != KETEN_OK) {
        return err;
    }
    size_t body_len = strlen(body);
    uint8_t pk[KETEN_SIGN_PK_BYTES];
    uint8_t payload[ED25519_PAYLOAD];
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    key_id(key_name, strlen(key_name), TYPE_ED25519, pk, payload);
    if (crypto_sign_detached(payload + KEY_ID_BYTES, NULL, (const uint8_t *)body, body_len, sk)
        != 0) {
        err = keten_err_set(KETEN_ERR_CRYPTO, "Ed25519 signing of the checkpoint failed");
        goto out;
    }
    err = format_line(key_name, payload, sizeof payload, &line);
    if (err != KETEN_OK) {
        goto out;
    }
    if (asprintf(&s, "%s\n%s", body, line) < 0) {
        s = NULL;
        err = keten_err_set(KETEN_ERR_NOMEM, "out of memory formatting a checkpoint note");
        goto out;
    }
    /* Verify our own output as a reader would, and read back what was
     * signed: a note that verifies but says something else is no better. */
    keten_checkpoint back;
    err = keten_checkpoint_open(s, strlen(s), key_name, pk, &back);
    if (err != KETEN_OK) {
        err = keten_err_set(KETEN_ERR_CRYPTO,
            "the checkpoint just signed does not verify (%s); the signing key is damaged",
            keten_err_str(err));
        goto out;
    }
    if (strcmp(back.origin, cp->origin) != 0 || back.size != cp->size
        || sodium_memcmp(back.root, cp->root, KETEN_HASH_BYTES) != 0
        || back.dir_version != cp->dir_version
        || sodium_memcmp(back.dir_hash, cp->dir_hash, KETEN_HASH_BYTES) != 0) {
        err = keten_err_set(
            KETEN_ERR_INCONSISTENT, "the checkpoint just signed does not read back as signed");
        goto out;
    }
    *note_out = s;
    s = NULL;
out:
    free(s);
    free(line);
    free(body);
    return err;
}

/* ---- cosignatures ------------------------------------------------------------- */

/* "cosignature/v1\ntime <t>\n" || body, malloc()ed. */
static keten_err cosig_message(const note *nt, uint64_t t, uint8_t **msg, size_t *msg_len)
{
    char head[sizeof COSIG_HEADER + DEC_U64_MAX + 1];
    int hl = snprintf(head, sizeof head, COSIG_HEADER "%" PRIu64 "\n", t);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        return keten_err_set(KETEN_ERR_INVALID, "cosignature timestamp does not format");
    }
    uint8_t *m = malloc((size_t)hl + nt->body_len);
    if (m == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "out of memory building a cosigned message");
    }
    memcpy(m, head, (size_t)hl);
    memcpy(m + hl, nt->body, nt->body_len);
    *msg = m;
    *msg_len = (size_t)hl + nt->body_len;
    return KETEN_OK;
}

typedef enum cosig_result { COSIG_NONE, COSIG_VALID, COSIG_INVALID } cosig_result;

/* Look at every line of name with the cosignature/v1 key id of pk (with
 * first_only, at the first such line alone): NONE if there is none, INVALID
 * if any of them fails, else VALID (*t_out: the timestamp of the first). */
static keten_err check_cosigs(const note *nt, const char *name,
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], cosig_result *res, size_t *n_valid,
    uint64_t *t_out, bool first_only)
{
    uint8_t id[KEY_ID_BYTES];
    key_id(name, strlen(name), TYPE_COSIG_V1, pk, id);
    size_t valid = 0;
    size_t invalid = 0;
    for (size_t i = 0; i < nt->n_lines; i++) {
        const sigline *l = &nt->lines[i];
        if (!line_named(l, name) || memcmp(l->payload, id, KEY_ID_BYTES) != 0) {
            continue; /* another key or signature type */
        }
        /* Name and key id match: this line must verify. */
        if (first_only && valid + invalid > 0) {
            break;
        }
        if (l->payload_len != COSIG_PAYLOAD) {
            invalid++;
            continue;
        }
        const uint8_t *payload = l->payload;
        uint64_t t = get_be64(payload + KEY_ID_BYTES);
        if (t > TIMESTAMP_MAX) {
            invalid++;
            continue;
        }
        uint8_t *msg = NULL;
        size_t msg_len = 0;
        keten_err err = cosig_message(nt, t, &msg, &msg_len);
        if (err != KETEN_OK) {
            return err;
        }
        bool ok = keten_sigcache_verify(payload + KEY_ID_BYTES + TIMESTAMP_BYTES, msg, msg_len, pk);
        free(msg);
        if (!ok) {
            invalid++;
            continue;
        }
        if (valid == 0 && t_out != NULL) {
            *t_out = t;
        }
        valid++;
    }
    *res = invalid > 0 ? COSIG_INVALID : valid > 0 ? COSIG_VALID : COSIG_NONE;
    if (n_valid != NULL) {
        *n_valid = valid;
    }
    return KETEN_OK;
}

/* A note whose body is a well-formed keten checkpoint. */
static keten_err parse_checkpoint_note(const char *s, size_t len, note *nt)
{
    keten_err err = parse_note(s, len, nt);
    if (err != KETEN_OK) {
        return err;
    }
    keten_checkpoint cp;
    err = parse_body(nt->body, nt->body_len, &cp);
    if (err != KETEN_OK) {
        note_free(nt);
    }
    return err;
}

keten_err keten_checkpoint_cosignature_verify(const char *note_text, size_t len,
    const char *witness_name, const uint8_t pk[static KETEN_SIGN_PK_BYTES], uint64_t *time_s_out)
{
    if (witness_name == NULL || pk == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_checkpoint_cosignature_verify: missing argument");
    }
    note nt;
    keten_err err = parse_checkpoint_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    cosig_result res = COSIG_NONE;
    uint64_t t = 0;
    err = check_cosigs(&nt, witness_name, pk, &res, NULL, &t, false);
    note_free(&nt);
    if (err != KETEN_OK) {
        return err;
    }
    if (res == COSIG_NONE) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "the checkpoint carries no cosignature by witness %s with the expected key id",
            witness_name);
    }
    if (res == COSIG_INVALID) {
        return keten_err_set(KETEN_ERR_BAD_SIGNATURE,
            "a cosignature of witness %s on the checkpoint does not verify", witness_name);
    }
    if (time_s_out != NULL) {
        *time_s_out = t;
    }
    return KETEN_OK;
}

keten_err keten_checkpoint_cosignature_sign(const char *note_text, size_t len,
    const char *witness_name, const uint8_t sk[static KETEN_SIGN_SK_BYTES], uint64_t time_s,
    char **line_out)
{
    if (line_out == NULL) {
        return keten_err_set(
            KETEN_ERR_INVALID, "keten_checkpoint_cosignature_sign: no output pointer");
    }
    *line_out = NULL;
    if (witness_name == NULL || sk == NULL || !key_name_valid(witness_name, strlen(witness_name))) {
        return keten_err_set(
            KETEN_ERR_BAD_NAME, "witness key name must be non-empty, without spaces or '+'");
    }
    if (time_s > TIMESTAMP_MAX) {
        return keten_err_set(
            KETEN_ERR_INVALID, "cosignature timestamp %" PRIu64 " is over 2^63 - 1", time_s);
    }
    note nt;
    keten_err err = parse_checkpoint_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    char *line = NULL;
    char *with = NULL;
    uint8_t pk[KETEN_SIGN_PK_BYTES];
    uint8_t payload[COSIG_PAYLOAD];
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    key_id(witness_name, strlen(witness_name), TYPE_COSIG_V1, pk, payload);
    put_be64(payload + KEY_ID_BYTES, time_s);
    err = cosig_message(&nt, time_s, &msg, &msg_len);
    if (err != KETEN_OK) {
        goto out;
    }
    if (crypto_sign_detached(payload + KEY_ID_BYTES + TIMESTAMP_BYTES, NULL, msg, msg_len, sk)
        != 0) {
        err = keten_err_set(KETEN_ERR_CRYPTO, "Ed25519 cosigning failed");
        goto out;
    }
    err = format_line(witness_name, payload, sizeof payload, &line);
    if (err != KETEN_OK) {
        goto out;
    }
    /* Verify our own line as a reader of the cosigned note would: the
     * note's body with only this line under it. */
    if (asprintf(&with, "%.*s\n%s", (int)nt.body_len, nt.body, line) < 0) {
        with = NULL;
        err = keten_err_set(KETEN_ERR_NOMEM, "out of memory checking a cosignature");
        goto out;
    }
    uint64_t t_back = 0;
    err = keten_checkpoint_cosignature_verify(with, strlen(with), witness_name, pk, &t_back);
    if (err != KETEN_OK || t_back != time_s) {
        err = keten_err_set(KETEN_ERR_CRYPTO,
            "the cosignature just made does not verify; the witness key is damaged");
        goto out;
    }
    *line_out = line;
    line = NULL;
out:
    free(with);
    free(line);
    free(msg);
    note_free(&nt);
    return err;
}

keten_err keten_checkpoint_add_line(const char *note_text, size_t len, const char *line, char **out)
{
    if (out == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_add_line: no output pointer");
    }
    *out = NULL;
    if (line == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_add_line: no line");
    }
    note nt;
    keten_err err = parse_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    size_t line_len = strnlen(line, (size_t)KETEN_CHECKPOINT_MAX + 1);
    char *s = NULL;
    sigline sl;
    uint8_t *scratch = NULL;
    if (line_len > KETEN_CHECKPOINT_MAX) {
        err = keten_err_set(
            KETEN_ERR_TOO_LARGE, "signature line over %u bytes", KETEN_CHECKPOINT_MAX);
        goto out;
    }
    if (line_len > 0 && line[line_len - 1] == '\n') {
        line_len--;
    }
    if (memchr(line, '\n', line_len) != NULL) {
        err = keten_err_set(KETEN_ERR_MALFORMED, "a signature line must be exactly one line");
        goto out;
    }
    scratch = malloc(line_len + 1);
    if (scratch == NULL) {
        err = keten_err_set(KETEN_ERR_NOMEM, "out of memory adding a signature line");
        goto out;
    }
    err = check_text(line, line_len, "signature line");
    if (err != KETEN_OK) {
        goto out;
    }
    err = parse_sigline(line, line_len, nt.n_lines + 1, scratch, line_len + 1, &sl);
    if (err != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < nt.n_lines; i++) {
        if (nt.lines[i].name_len == sl.name_len
            && memcmp(nt.lines[i].name, sl.name, sl.name_len) == 0) {
            err = keten_err_set(KETEN_ERR_EXISTS,
                "the checkpoint already carries a signature line of key %.*s",
                (int)(sl.name_len > KEY_NAME_MAX ? KEY_NAME_MAX : sl.name_len), sl.name);
            goto out;
        }
    }
    size_t total = len + line_len + 1;
    if (total > KETEN_CHECKPOINT_MAX) {
        err = keten_err_set(KETEN_ERR_TOO_LARGE,
            "checkpoint note with the new line would be %zu bytes, over the limit of %u", total,
            KETEN_CHECKPOINT_MAX);
        goto out;
    }
    s = malloc(total + 1);
    if (s == NULL) {
        err = keten_err_set(KETEN_ERR_NOMEM, "out of memory adding a signature line");
        goto out;
    }
    memcpy(s, note_text, len);
    memcpy(s + len, line, line_len);
    s[len + line_len] = '\n';
    s[total] = '\0';
    note check;
    err = parse_note(s, total, &check);
    if (err != KETEN_OK) {
        goto out;
    }
    note_free(&check);
    *out = s;
    s = NULL;
out:
    free(s);
    free(scratch);
    note_free(&nt);
    return err;
}

keten_err keten_checkpoint_note_trim(
    const char *note_text, size_t len, const keten_directory *dir, char **out)
{
    if (out == NULL || dir == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_note_trim: missing argument");
    }
    *out = NULL;
    const Keten__Directory *doc = keten_directory_doc(dir);
    if (doc == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_note_trim: empty directory");
    }
    note nt;
    keten_err err = parse_checkpoint_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    char *buf = malloc(len + 1);
    uint8_t(*ids)[KEY_ID_BYTES] = calloc(doc->n_nodes ? doc->n_nodes : 1, sizeof *ids);
    bool *has_id = calloc(doc->n_nodes ? doc->n_nodes : 1, sizeof *has_id);
    bool *kept = calloc(doc->n_nodes ? doc->n_nodes : 1, sizeof *kept);
    if (buf == NULL || ids == NULL || has_id == NULL || kept == NULL) {
        err = keten_err_set(KETEN_ERR_NOMEM, "out of memory trimming a checkpoint note");
        goto out;
    }
    /* The key id each node's line must carry: the broker's log key
     * (Ed25519 note signature), a partner's sign key (cosignature/v1). */
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        if (c == NULL || c->id == NULL || c->role == NULL) {
            continue;
        }
        bool broker = strcmp(c->role, "broker") == 0;
        const ProtobufCBinaryData *pk = broker ? &c->log_pk : &c->sign_pk;
        if (pk->len == KETEN_SIGN_PK_BYTES) {
            key_id(c->id, strlen(c->id), broker ? TYPE_ED25519 : TYPE_COSIG_V1, pk->data, ids[i]);
            has_id[i] = true;
        }
    }
    memcpy(buf, nt.body, nt.body_len);
    size_t used = nt.body_len;
    buf[used++] = '\n';
    for (size_t k = 0; k < nt.n_lines; k++) {
        const sigline *l = &nt.lines[k];
        for (size_t i = 0; i < doc->n_nodes; i++) {
            if (!has_id[i] || !line_named(l, doc->nodes[i]->id)) {
                continue;
            }
            if (!kept[i] && l->payload_len >= KEY_ID_BYTES
                && memcmp(l->payload, ids[i], KEY_ID_BYTES) == 0) {
                /* The line as it stands in the note: prefix, name, payload. */
                const char *start = l->name - SIG_PREFIX_LEN;
                const char *nl = memchr(l->name, '\n', len - (size_t)(l->name - note_text));
                size_t n = (size_t)(nl - start) + 1;
                memcpy(buf + used, start, n);
                used += n;
                kept[i] = true;
            }
            break; /* node ids are unique in a verified directory */
        }
    }
    buf[used] = '\0';
    *out = buf;
    buf = NULL;
out:
    free(buf);
    free(ids);
    free(has_id);
    free(kept);
    note_free(&nt);
    return err;
}

keten_err keten_checkpoint_witnesses(const char *note_text, size_t len, const keten_directory *dir,
    size_t *count_out, bool *witnessed)
{
    if (dir == NULL || count_out == NULL || witnessed == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_witnesses: missing argument");
    }
    *count_out = 0;
    *witnessed = false;
    const Keten__Directory *doc = keten_directory_doc(dir);
    if (doc == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "keten_checkpoint_witnesses: empty directory");
    }
    note nt;
    keten_err err = parse_checkpoint_note(note_text, len, &nt);
    if (err != KETEN_OK) {
        return err;
    }
    size_t count = 0;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        if (c == NULL || c->id == NULL || c->role == NULL || strcmp(c->role, "broker") == 0
            || c->sign_pk.len != KETEN_SIGN_PK_BYTES) {
            continue;
        }
        cosig_result res = COSIG_NONE;
        size_t valid = 0;
        err = check_cosigs(&nt, c->id, c->sign_pk.data, &res, &valid, NULL, true);
        if (err != KETEN_OK) {
            note_free(&nt);
            return err;
        }
        /* Node ids are unique in a verified directory: each counts once.
         * The first line under its name and key id decides (an honest note
         * has one; a relayer that put hundreds there costs one verification
         * each, not hundreds); a bad line appended after it (which anyone
         * relaying the note could do) does not erase it. */
        if (valid > 0) {
            count++;
        }
    }
    note_free(&nt);
    size_t quorum = keten_directory_quorum(dir);
    *count_out = count;
    *witnessed = count >= (quorum == 0 ? 1 : quorum);
    return KETEN_OK;
}
