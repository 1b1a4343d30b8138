#include "proof.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "directory.h"
#include "merkle.h"
#include "pb.h"
#include "records.h"
#include "sigcheck.h"
#include "util.h"
#include "sha256.h"

#define ORIGIN_PREFIX "keten/"
#define KEY_ID_BYTES 4
#define NOTE_KEY_TYPE_ED25519 0x01
#define BROKER_ROLE "broker"

/* ---- base64 ------------------------------------------------------------- */

static json_t *b64_json(const uint8_t *p, size_t len)
{
    size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(n);
    if (s == NULL) {
        return NULL;
    }
    sodium_bin2base64(s, n, p, len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* Decode standard base64 of at most max bytes (exactly `want` unless 0). */
static keten_err b64_decode(
    const json_t *j, const char *what, size_t max, size_t want, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    const char *s = json_string_value(j);
    if (s == NULL) {
        return keten_err_set(KETEN_ERR_MALFORMED, "%s is not a base64 string", what);
    }
    size_t slen = json_string_length(j);
    if (slen / 4 * 3 > max + 3) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "%s is over %zu bytes", what, max);
    }
    uint8_t *buf = malloc(slen / 4 * 3 + 3);
    if (buf == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "decoding %s", what);
    }
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin(
            buf, slen / 4 * 3 + 3, s, slen, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL)
            != 0
        || end != s + slen || got > max || (want != 0 && got != want)) {
        free(buf);
        return keten_err_set(KETEN_ERR_MALFORMED, "%s is not standard base64%s", what,
            want != 0 ? " of the right length" : "");
    }
    *out = buf;
    *out_len = got;
    return KETEN_OK;
}

static void key_id_hex(const char *name, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    char out[static 2 * KEY_ID_BYTES + 1])
{
    static const uint8_t nl = '\n', type = NOTE_KEY_TYPE_ED25519;
    uint8_t h[KETEN_SHA256_BYTES];
    keten_sha256_state st;
    keten_sha256_init(&st);
    keten_sha256_update(&st, (const uint8_t *)name, strlen(name));
    keten_sha256_update(&st, &nl, 1);
    keten_sha256_update(&st, &type, 1);
    keten_sha256_update(&st, pk, KETEN_SIGN_PK_BYTES);
    keten_sha256_final(&st, h);
    keten_hex(h, KEY_ID_BYTES, out);
}

/* The checkpoint body of a note (up to its first empty line). */
static keten_err note_body(const char *note, size_t len, keten_checkpoint *cp)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (note[i] == '\n' && note[i + 1] == '\n') {
            return keten_checkpoint_parse_body(note, i + 1, cp);
        }
    }
    return keten_err_set(
        KETEN_ERR_MALFORMED, "the checkpoint note has no empty line after its body");
}

/* ---- build -------------------------------------------------------------- */

typedef struct blob {
    uint64_t index; /* leaf index, or directory version */
    int event;
    uint8_t *data;
    size_t len;
} blob;

typedef struct build_ctx {
    const uint8_t *msg_id;
    blob *leaves;
    size_t n_leaves;
    blob *dirs;
    size_t n_dirs;
} build_ctx;

static keten_err keep(
    blob **arr, size_t *n, size_t max, uint64_t index, int event, const uint8_t *p, size_t len)
{
    if (*n >= max) {
        return keten_err_set(KETEN_ERR_TOO_LARGE, "more than %zu items for one proof bundle", max);
    }
    blob *na = realloc(*arr, (*n + 1) * sizeof *na);
    if (na == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
    }
    *arr = na;
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
    }
    if (len > 0) {
        memcpy(copy, p, len);
    }
    na[*n] = (blob) { index, event, copy, len };
    (*n)++;
    return KETEN_OK;
}

static keten_err build_visit(
    void *ctx, const Keten__AuditRecord *rec, const records_msg *m, const uint8_t *leaf, size_t len)
{
    (void)m;
    build_ctx *c = ctx;
    if (rec->msg_id.len == KETEN_MSG_ID_BYTES
        && memcmp(rec->msg_id.data, c->msg_id, KETEN_MSG_ID_BYTES) == 0) {
        keten_err e = keep(
            &c->leaves, &c->n_leaves, PROOF_MAX_RECORDS, rec->seq, (int)rec->event, leaf, len);
        if (e != KETEN_OK) {
            return e;
        }
    }
    if (rec->event == KETEN__EVENT__EVENT_DIRECTORY_INSTALLED && rec->directory.len > 0) {
        for (size_t i = 0; i < c->n_dirs; i++) {
            if (c->dirs[i].index == rec->directory_version) {
                return KETEN_OK; /* installed again: the chain has it */
            }
        }
        return keep(&c->dirs, &c->n_dirs, PROOF_MAX_DIRECTORIES, rec->directory_version,
            (int)rec->event, rec->directory.data, rec->directory.len);
    }
    return KETEN_OK;
}

static void blobs_free(blob *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(b[i].data);
    }
    free(b);
}

/* The broker certificate of a SignedDirectory, read without verification
 * (check-proof verifies the chain). */
static keten_err broker_of(
    const blob *dir, char name[static KETEN_NAME_MAX + 1], uint8_t pk[static KETEN_SIGN_PK_BYTES])
{
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *d = NULL;
    keten_err e = KETEN_PB_UNPACK(
        keten__signed_directory, dir->data, dir->len, KETEN_DIRECTORY_MAX, "signed directory", &sd);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, "directory", &d);
    }
    if (e == KETEN_OK) {
        e = keten_err_set(
            KETEN_ERR_NOT_FOUND, "directory version %" PRIu64 " lists no broker", dir->index);
        for (size_t i = 0; i < d->n_nodes; i++) {
            const Keten__NodeCert *c = d->nodes[i];
            if (c != NULL && strcmp(c->role, BROKER_ROLE) == 0
                && c->log_pk.len == KETEN_SIGN_PK_BYTES && strlen(c->id) <= KETEN_NAME_MAX) {
                snprintf(name, KETEN_NAME_MAX + 1, "%s", c->id);
                memcpy(pk, c->log_pk.data, KETEN_SIGN_PK_BYTES);
                e = KETEN_OK;
                break;
            }
        }
    }
    keten_pb_free((ProtobufCMessage **)(void *)&d);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    return e;
}

static int cmp_blob(const void *a, const void *b)
{
    const blob *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

/* Signature lines of a note (after its first empty line). */
static size_t sig_lines(const char *note, size_t len)
{
    size_t n = 0;
    bool body = true;
    for (size_t i = 0; i + 1 < len; i++) {
        if (note[i] == '\n') {
            if (body && note[i + 1] == '\n') {
                body = false;
            } else if (!body) {
                n++;
            }
        }
    }
    return n;
}

/* Among the stored checkpoints that cover leaf `last` and the log, the one
 * with the most signature lines (cosignatures: the strongest evidence), the
 * latest of those. check-proof verifies whatever is chosen. */
static keten_err pick_checkpoint(
    const auditdb *db, uint64_t last, uint64_t *size, const char **note, size_t *len, bool *found)
{
    *found = false;
    size_t best = 0, n = 0;
    const tiles_note *notes = auditdb_notes(db, &n);
    for (size_t i = 0; i < n; i++) {
        uint64_t s = notes[i].size;
        if (s <= last || s > db->size) {
            continue;
        }
        size_t lines = sig_lines(notes[i].note, notes[i].len);
        if (!*found || lines >= best) {
            best = lines;
            *size = s;
            *note = notes[i].note;
            *len = notes[i].len;
            *found = true;
        }
    }
    return KETEN_OK;
}

static keten_err set_new(json_t *o, const char *k, json_t *v)
{
    if (v == NULL || json_object_set_new(o, k, v) != 0) {
        return keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
    }
    return KETEN_OK;
}

keten_err proof_build(
    const auditdb *db, const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out)
{
    *out = NULL;
    build_ctx c = { .msg_id = msg_id };
    records_index *idx = records_index_new();
    json_t *o = NULL;
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, hex);
    keten_err e = KETEN_OK;
    if (idx == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
    }
    if ((e = records_scan(db, idx, build_visit, &c)) != KETEN_OK) {
        goto out;
    }
    if (c.n_leaves == 0) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND, "message %s has no record in this log", hex);
        goto out;
    }
    uint64_t last = c.leaves[c.n_leaves - 1].index;
    uint64_t size = 0;
    const char *note = NULL;
    size_t note_len = 0;
    bool found = false;
    if ((e = pick_checkpoint(db, last, &size, &note, &note_len, &found)) != KETEN_OK) {
        goto out;
    }
    if (!found) {
        uint64_t latest = 0;
        const char *n2 = NULL;
        size_t l2 = 0;
        bool any = false;
        if ((e = auditdb_checkpoint_last(db, db->size, &latest, &n2, &l2, &any)) != KETEN_OK) {
            goto out;
        }
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "no stored checkpoint covers record %" PRIu64 " of message %s yet (the latest covers "
            "%" PRIu64 " records); wait for the broker's next checkpoint and run prove again",
            last, hex, any ? latest : 0);
        goto out;
    }
    keten_checkpoint cp;
    if ((e = note_body(note, note_len, &cp)) != KETEN_OK) {
        goto out;
    }
    if (cp.size != size) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the stored checkpoint filed under size %" PRIu64 " says %" PRIu64
            "; run keten-audit verify",
            size, cp.size);
        goto out;
    }
    if (strncmp(cp.origin, ORIGIN_PREFIX, strlen(ORIGIN_PREFIX)) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the stored checkpoint's origin '%s' is not a keten origin; run keten-audit verify",
            cp.origin);
        goto out;
    }
    if (c.n_dirs > 1) {
        qsort(c.dirs, c.n_dirs, sizeof *c.dirs, cmp_blob); /* NULL when none */
    }
    const blob *dir = NULL;
    size_t n_chain = 0;
    for (size_t i = 0; i < c.n_dirs && c.dirs[i].index <= cp.dir_version; i++) {
        n_chain = i + 1;
        if (c.dirs[i].index == cp.dir_version) {
            dir = &c.dirs[i];
        }
    }
    if (dir == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "the checkpoint names directory version %" PRIu64 ", which the log does not hold",
            cp.dir_version);
        goto out;
    }
    char name[KETEN_NAME_MAX + 1];
    uint8_t log_pk[KETEN_SIGN_PK_BYTES];
    if ((e = broker_of(dir, name, log_pk)) != KETEN_OK) {
        goto out;
    }
    char kid[2 * KEY_ID_BYTES + 1];
    key_id_hex(name, log_pk, kid);

    o = json_object();
    json_t *key = json_object();
    json_t *dirs = json_array();
    json_t *recs = json_array();
    if (o == NULL || key == NULL || dirs == NULL || recs == NULL) {
        json_decref(key);
        json_decref(dirs);
        json_decref(recs);
        e = keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
        goto out;
    }
    if ((e = set_new(o, "format", json_string(PROOF_FORMAT))) != KETEN_OK
        || (e = set_new(o, "network", json_string(cp.origin + strlen(ORIGIN_PREFIX)))) != KETEN_OK
        || (e = set_new(o, "msg_id", json_string(hex))) != KETEN_OK
        || (e = set_new(o, "checkpoint", json_stringn(note, note_len))) != KETEN_OK
        || (e = set_new(o, "log_key", key)) != KETEN_OK
        || (e = set_new(key, "name", json_string(name))) != KETEN_OK
        || (e = set_new(key, "public_key", b64_json(log_pk, sizeof log_pk))) != KETEN_OK
        || (e = set_new(key, "key_id", json_string(kid))) != KETEN_OK
        || (e = set_new(o, "directories", dirs)) != KETEN_OK
        || (e = set_new(o, "records", recs)) != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < n_chain; i++) {
        if (json_array_append_new(dirs, b64_json(c.dirs[i].data, c.dirs[i].len)) != 0) {
            e = keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
            goto out;
        }
    }
    for (size_t i = 0; i < c.n_leaves; i++) {
        const blob *l = &c.leaves[i];
        keten_hash path[KETEN_MERKLE_MAX_PROOF];
        size_t plen = 0;
        keten_hash lh;
        keten_merkle_leaf_hash(l->data, l->len, lh);
        if ((e = tiles_inclusion_proof(db->t, l->index, size, path, &plen))
            != KETEN_OK) {
            goto out;
        }
        if (keten_merkle_verify_inclusion(
                lh, l->index, size, (const keten_hash *)path, plen, cp.root)
            != KETEN_OK) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "record %" PRIu64 " is not included in the stored checkpoint of size %" PRIu64
                ": the log does not match its own checkpoint; run keten-audit verify",
                l->index, size);
            goto out;
        }
        json_t *r = json_object();
        json_t *p = json_array();
        if (r == NULL || p == NULL || json_array_append_new(recs, r) != 0) {
            json_decref(p);
            e = keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
            goto out;
        }
        if ((e = set_new(r, "leaf_index", json_integer((json_int_t)l->index))) != KETEN_OK
            || (e = set_new(r, "tree_size", json_integer((json_int_t)size))) != KETEN_OK
            || (e = set_new(r, "event", json_string(records_event_name(l->event)))) != KETEN_OK
            || (e = set_new(r, "leaf", b64_json(l->data, l->len))) != KETEN_OK
            || (e = set_new(r, "leaf_hash", b64_json(lh, sizeof lh))) != KETEN_OK
            || (e = set_new(r, "audit_path", p)) != KETEN_OK) {
            goto out;
        }
        for (size_t k = 0; k < plen; k++) {
            if (json_array_append_new(p, b64_json(path[k], KETEN_HASH_BYTES)) != 0) {
                e = keten_err_set(KETEN_ERR_NOMEM, "building a proof bundle");
                goto out;
            }
        }
    }
    *out = o;
    o = NULL;
out:
    json_decref(o);
    blobs_free(c.leaves, c.n_leaves);
    blobs_free(c.dirs, c.n_dirs);
    records_index_destroy(&idx);
    return e;
}

/* ---- check -------------------------------------------------------------- */

static const json_t *member(
    const json_t *o, const char *k, json_type type, const char *where, keten_err *e)
{
    const json_t *v = json_object_get(o, k);
    if (v == NULL || json_typeof(v) != type) {
        *e = keten_err_set(KETEN_ERR_MALFORMED, "%s has no %s field of the right type", where, k);
        return NULL;
    }
    return v;
}

/* Refuse a field a format-v2 bundle does not have: an unknown field is not
 * checked, so a reader must not be shown it as part of a verified bundle.
 * allowed is NULL-terminated. */
static keten_err only_fields(const json_t *o, const char *const *allowed, const char *where)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        (void)v;
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++) {
            known = strcmp(k, allowed[i]) == 0;
        }
        if (known) {
            continue;
        }
        bool printable = strlen(k) <= 64;
        for (const char *c = k; printable && *c != '\0'; c++) {
            printable = *c >= 0x20 && *c < 0x7f;
        }
        return keten_err_set(KETEN_ERR_MALFORMED,
            "%s has a field %s%s%s that a " PROOF_FORMAT " bundle does not have; an unknown field "
            "is not checked, so the bundle is refused: ask its maker for a bundle made by "
            "keten-audit prove",
            where, printable ? "'" : "",
            printable ? k : "(a name over 64 bytes or with control characters)",
            printable ? "'" : "");
    }
    return KETEN_OK;
}

static keten_err check_chain(
    const json_t *dirs, const Keten__Anchor *anchor, keten_directory ***out, size_t *n_out)
{
    size_t n = json_array_size(dirs);
    *out = NULL;
    *n_out = 0;
    if (n == 0 || n > PROOF_MAX_DIRECTORIES) {
        return keten_err_set(KETEN_ERR_MALFORMED,
            "the bundle's directories hold %zu versions (1..%d allowed)", n, PROOF_MAX_DIRECTORIES);
    }
    keten_directory **chain = calloc(n, sizeof *chain);
    if (chain == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "checking the directory chain");
    }
    keten_err e = KETEN_OK;
    size_t i = 0;
    for (; i < n; i++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        char what[64];
        snprintf(what, sizeof what, "directories[%zu]", i);
        e = b64_decode(json_array_get(dirs, i), what, KETEN_DIRECTORY_MAX, 0, &bytes, &len);
        if (e != KETEN_OK) {
            break;
        }
        e = keten_directory_verify(
            i == 0 ? anchor : NULL, i == 0 ? NULL : chain[i - 1], bytes, len, 0, &chain[i]);
        free(bytes);
        if (e != KETEN_OK) {
            char detail[512];
            snprintf(detail, sizeof detail, "%s", keten_err_detail());
            e = keten_err_set(e, "directories[%zu] does not verify %s: %s", i,
                i == 0 ? "against the anchor" : "as the next version of the chain", detail);
            break;
        }
    }
    if (e != KETEN_OK) {
        for (size_t k = 0; k < n; k++) {
            keten_directory_destroy(&chain[k]);
        }
        free(chain);
        return e;
    }
    *out = chain;
    *n_out = n;
    return KETEN_OK;
}

static const keten_directory *chain_version(keten_directory *const *chain, size_t n, uint64_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (keten_directory_version(chain[i]) == v) {
            return chain[i];
        }
    }
    return NULL;
}

/* What check_record() keeps across the records of one bundle. */
typedef struct check_state {
    Keten__AuditRecord *submitted; /* the message's submitted record, once seen */
    uint64_t expires_at; /* its signed header's */
    sigcheck_heads *heads; /* receipt batch heads verified */
    bool any; /* a record was checked; last_index is its leaf index */
    uint64_t last_index;
    /* a bit per recipient of the submitted record (as verify keeps them):
     * its delivered record, its answer, its expiry */
    uint64_t delivered, answered, expired;
} check_state;

_Static_assert(KETEN_MAX_RECIPIENTS <= 64, "one bit per recipient in check_state");

/* The index of id among sub's recipients, or -1. */
static int recipient_index(const Keten__AuditRecord *sub, const char *id)
{
    for (size_t i = 0; i < sub->n_recipients; i++) {
        if (strcmp(sub->recipients[i], id != NULL ? id : "") == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool has_recipient(const Keten__AuditRecord *sub, const char *id)
{
    return recipient_index(sub, id) >= 0;
}

/* The broker logs per recipient at most one delivered record and one
 * answer or expiry, the delivery first: record rec (event ev) for recipient
 * id is refused when one came before it (keten-audit verify refuses the
 * same in a log). */
static keten_err recipient_step(const char *where, const Keten__AuditRecord *rec,
    const Keten__AuditRecord *sub, const char *id, check_state *st)
{
    int i = recipient_index(sub, id);
    if (i < 0) {
        return KETEN_OK; /* named by the caller's recipient check */
    }
    uint64_t bit = UINT64_C(1) << (unsigned)i;
    const char *before = NULL;
    if ((st->answered & bit) != 0) {
        before = "answered by";
    } else if ((st->expired & bit) != 0) {
        before = "expired for";
    } else if (rec->event == KETEN__EVENT__EVENT_DELIVERED && (st->delivered & bit) != 0) {
        before = "delivered to";
    }
    if (before != NULL) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s: record %" PRIu64 " (%s): the message was already %s '%s' in an earlier "
            "record; the broker writes one delivery and one receipt, refusal or expiry per "
            "recipient",
            where, rec->seq, records_event_name((int)rec->event), before, id);
    }
    if (rec->event == KETEN__EVENT__EVENT_DELIVERED) {
        st->delivered |= bit;
    } else if (rec->event == KETEN__EVENT__EVENT_EXPIRED) {
        st->expired |= bit;
    } else {
        st->answered |= bit;
    }
    return KETEN_OK;
}

/* A record after the submitted one: it agrees with it (sender, recipients),
 * and a receipt names its envelope with the right outcome. */
static keten_err check_answer(const char *where, const keten_directory *dir,
    const Keten__AuditRecord *rec, check_state *st)
{
    const char *ev = records_event_name((int)rec->event);
    const Keten__AuditRecord *sub = st->submitted;
    if (sub == NULL) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s: record %" PRIu64 " (%s) comes before any submitted record of the message in "
            "the bundle: it cannot be tied to an envelope",
            where, rec->seq, ev);
    }
    if (strcmp(rec->sender, sub->sender) != 0) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "%s: record %" PRIu64 " (%s) names sender '%s', the submitted record (%" PRIu64
            ") '%s'",
            where, rec->seq, ev, rec->sender, sub->seq, sub->sender);
    }
    keten_err e;
    if (rec->event == KETEN__EVENT__EVENT_EXPIRED) {
        for (size_t k = 0; k < rec->n_recipients; k++) {
            if (!has_recipient(sub, rec->recipients[k])) {
                return keten_err_set(KETEN_ERR_MISMATCH,
                    "%s: record %" PRIu64 " (expired) names '%s', not a recipient of the "
                    "message",
                    where, rec->seq, rec->recipients[k]);
            }
            if ((e = recipient_step(where, rec, sub, rec->recipients[k], st)) != KETEN_OK) {
                return e;
            }
        }
        return KETEN_OK;
    }
    if (!has_recipient(sub, rec->node)) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "%s: record %" PRIu64 " (%s): '%s' is not a recipient of the message", where,
            rec->seq, ev, rec->node);
    }
    if ((e = recipient_step(where, rec, sub, rec->node, st)) != KETEN_OK) {
        return e;
    }
    if (rec->event != KETEN__EVENT__EVENT_RECEIPTED
        && rec->event != KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT) {
        return KETEN_OK;
    }
    if (rec->n_recipients != 1 || strcmp(rec->recipients[0], rec->node) != 0) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "%s: record %" PRIu64 " (%s): its recipients are not exactly its node '%s'", where,
            rec->seq, ev, rec->node);
    }
    return sigcheck_receipt(dir, rec, sub->envelope_hash.data, st->heads, NULL);
}

/* The message as its submitted record states it (checked by the caller). */
static void note_message(proof_message *m, const Keten__AuditRecord *rec, uint64_t created_at)
{
    memset(m, 0, sizeof *m);
    m->known = true;
    snprintf(m->sender, sizeof m->sender, "%s", rec->sender != NULL ? rec->sender : "");
    for (size_t i = 0; i < rec->n_recipients && i < KETEN_MAX_RECIPIENTS; i++) {
        snprintf(m->recipients[i], sizeof m->recipients[i], "%s", rec->recipients[i]);
        m->n_recipients++;
    }
    m->kind = (int)rec->kind;
    snprintf(m->category, sizeof m->category, "%s", rec->category != NULL ? rec->category : "");
    snprintf(m->purpose, sizeof m->purpose, "%s", rec->purpose != NULL ? rec->purpose : "");
    m->created_at = created_at;
    m->rule = rec->rule;
}
static keten_err check_record(const json_t *jr, size_t i, const keten_checkpoint *cp,
    keten_directory *const *chain, size_t n_chain, const uint8_t *msg_id, check_state *st,
    proof_result *res)
{
    keten_err e = KETEN_OK;
    char where[64];
    snprintf(where, sizeof where, "records[%zu]", i);
    const json_t *ji = member(jr, "leaf_index", JSON_INTEGER, where, &e);
    const json_t *js = ji != NULL ? member(jr, "tree_size", JSON_INTEGER, where, &e) : NULL;
    const json_t *jl = js != NULL ? member(jr, "leaf", JSON_STRING, where, &e) : NULL;
    const json_t *jh = jl != NULL ? member(jr, "leaf_hash", JSON_STRING, where, &e) : NULL;
    const json_t *jp = jh != NULL ? member(jr, "audit_path", JSON_ARRAY, where, &e) : NULL;
    const json_t *je = jp != NULL ? member(jr, "event", JSON_STRING, where, &e) : NULL;
    if (je == NULL) {
        return e;
    }
    static const char *const record_fields[]
        = { "leaf_index", "tree_size", "event", "leaf", "leaf_hash", "audit_path", NULL };
    if ((e = only_fields(jr, record_fields, where)) != KETEN_OK) {
        return e;
    }
    json_int_t index = json_integer_value(ji);
    if (index < 0 || (uint64_t)json_integer_value(js) != cp->size || (uint64_t)index >= cp->size) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s: leaf %lld in a tree of %lld records does not fit the checkpoint's %" PRIu64, where,
            (long long)index, (long long)json_integer_value(js), cp->size);
    }
    if (st->any && (uint64_t)index <= st->last_index) {
        return keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s: leaf %lld comes after leaf %" PRIu64 ": the records of a bundle are in log "
            "order, each once (a record was given twice or moved)",
            where, (long long)index, st->last_index);
    }
    st->any = true;
    st->last_index = (uint64_t)index;
    uint8_t *leaf = NULL, *given_hash = NULL;
    size_t leaf_len = 0, hl = 0, plen = json_array_size(jp);
    keten_hash path[KETEN_MERKLE_MAX_PROOF];
    Keten__AuditRecord *rec = NULL;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    if (plen > KETEN_MERKLE_MAX_PROOF) {
        return keten_err_set(KETEN_ERR_MALFORMED, "%s: audit path of %zu hashes", where, plen);
    }
    if ((e = b64_decode(jl, "leaf", KETEN_MERKLE_LEAF_MAX, 0, &leaf, &leaf_len)) != KETEN_OK
        || (e = b64_decode(jh, "leaf_hash", KETEN_HASH_BYTES, KETEN_HASH_BYTES, &given_hash, &hl))
            != KETEN_OK) {
        goto out;
    }
    for (size_t k = 0; k < plen; k++) {
        uint8_t *h = NULL;
        size_t l = 0;
        if ((e = b64_decode(json_array_get(jp, k), "audit_path entry", KETEN_HASH_BYTES,
                 KETEN_HASH_BYTES, &h, &l))
            != KETEN_OK) {
            goto out;
        }
        memcpy(path[k], h, KETEN_HASH_BYTES);
        free(h);
    }
    keten_hash lh;
    keten_merkle_leaf_hash(leaf, leaf_len, lh);
    if (sodium_memcmp(lh, given_hash, KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s (leaf %lld): the leaf bytes do not hash to the bundle's leaf_hash", where,
            (long long)index);
        goto out;
    }
    if (keten_merkle_verify_inclusion(
            lh, (uint64_t)index, cp->size, (const keten_hash *)path, plen, cp->root)
        != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s (leaf %lld): the audit path of %zu hashes does not lead to the checkpoint's root "
            "of %" PRIu64 " records: the leaf, its index or the path was changed (%s)",
            where, (long long)index, plen, cp->size, detail);
        goto out;
    }
    if ((e = records_decode(leaf, leaf_len, true, &rec)) != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(
            KETEN_ERR_INCONSISTENT, "%s: the leaf is not an audit record: %s", where, detail);
        goto out;
    }
    if (rec->seq == (uint64_t)index && rec->msg_id.len == KETEN_MSG_ID_BYTES
        && memcmp(rec->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) == 0
        && strcmp(json_string_value(je), records_event_name((int)rec->event)) != 0) {
        /* The record is this message's; only the bundle's name of it lies. */
        char named[64];
        keten_text_clean(json_string_value(je), named, sizeof named);
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "%s (leaf %lld): the bundle calls it a '%s' record, the signed leaf is a '%s' record",
            where, (long long)index, named, records_event_name((int)rec->event));
        goto out;
    }
    if (rec->seq != (uint64_t)index || rec->msg_id.len != KETEN_MSG_ID_BYTES
        || memcmp(rec->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "%s: the leaf is record %" PRIu64 " (%s), not leaf %lld of this message as the "
            "bundle says",
            where, rec->seq, records_event_name((int)rec->event), (long long)index);
        goto out;
    }
    const keten_directory *dir = chain_version(chain, n_chain, rec->directory_version);
    uint64_t created_at = 0;
    bool answer = rec->event == KETEN__EVENT__EVENT_RECEIPTED
        || rec->event == KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT;
    if (rec->event == KETEN__EVENT__EVENT_SUBMITTED || answer) {
        if (dir == NULL) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "%s: record %" PRIu64 " names directory version %" PRIu64
                ", which the bundle's chain lacks",
                where, rec->seq, rec->directory_version);
            goto out;
        }
    }
    if (rec->event == KETEN__EVENT__EVENT_SUBMITTED) {
        if (st->submitted != NULL) {
            e = keten_err_set(KETEN_ERR_INCONSISTENT,
                "%s: a second submitted record of the message (records %" PRIu64
                " and %" PRIu64 ")",
                where, st->submitted->seq, rec->seq);
            goto out;
        }
        if ((e = sigcheck_header(dir, rec, &created_at, &st->expires_at)) != KETEN_OK
            || (e = sigcheck_submitted(dir, rec, created_at, &scratch, &scratch_cap)) != KETEN_OK
            || (e = sigcheck_rule(dir, rec)) != KETEN_OK) {
            goto out;
        }
    } else if (rec->event == KETEN__EVENT__EVENT_DELIVERED
        || rec->event == KETEN__EVENT__EVENT_EXPIRED || answer) {
        if ((e = check_answer(where, dir, rec, st)) != KETEN_OK) {
            goto out;
        }
    }
    if (rec->event == KETEN__EVENT__EVENT_EXPIRED && rec->time < st->expires_at) {
        /* The broker expires a message once its clock has passed
         * expires_at, and dates the record at that clock or later. */
        char t1[32], t2[32];
        keten_time_iso(rec->time, t1, sizeof t1);
        keten_time_iso(st->expires_at, t2, sizeof t2);
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "%s: record %" PRIu64 " (expired) is dated %s, before the message expires at %s "
            "(its signed header): the broker expires a message only after that",
            where, rec->seq, t1, t2);
        goto out;
    }
    proof_record *pr = &res->records[res->n_records++];
    pr->leaf_index = rec->seq;
    pr->time = rec->time;
    pr->rule = rec->rule;
    pr->event = (int)rec->event;
    pr->reason = (int)rec->reason;
    snprintf(pr->node, sizeof pr->node, "%s", rec->node != NULL ? rec->node : "");
    pr->expired_for = 0;
    for (size_t k = 0; rec->event == KETEN__EVENT__EVENT_EXPIRED && k < rec->n_recipients; k++) {
        /* each one a recipient of the submitted record (check_answer) */
        int r = recipient_index(st->submitted, rec->recipients[k]);
        if (r >= 0) {
            pr->expired_for |= UINT64_C(1) << (unsigned)r;
        }
    }
    if (rec->event == KETEN__EVENT__EVENT_SUBMITTED) {
        note_message(&res->message, rec, created_at);
        st->submitted = rec; /* kept for the records after it */
        rec = NULL;
    }
out:
    free(scratch);
    records_free(&rec);
    free(leaf);
    free(given_hash);
    return e;
}

keten_err proof_check(
    const uint8_t *buf, size_t len, const Keten__Anchor *anchor, proof_result *res)
{
    memset(res, 0, sizeof *res);
    json_error_t jerr;
    keten_err e = KETEN_OK;
    keten_directory **chain = NULL;
    size_t n_chain = 0;
    check_state st = { .submitted = NULL };
    if (len > PROOF_MAX) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "a proof bundle of %zu bytes is over %u", len, PROOF_MAX);
    }
    json_t *o = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        return keten_err_set(
            KETEN_ERR_MALFORMED, "not a JSON proof bundle (line %d: %s)", jerr.line, jerr.text);
    }
    if (!json_is_object(o)) { /* without JSON_DECODE_ANY: an array */
        json_decref(o);
        return keten_err_set(KETEN_ERR_MALFORMED,
            "not a JSON proof bundle: the document is a JSON array, not the object that "
            "'keten-audit prove' writes");
    }
    const json_t *jf = member(o, "format", JSON_STRING, "the bundle", &e);
    const json_t *jn = jf != NULL ? member(o, "network", JSON_STRING, "the bundle", &e) : NULL;
    const json_t *jm = jn != NULL ? member(o, "msg_id", JSON_STRING, "the bundle", &e) : NULL;
    const json_t *jc = jm != NULL ? member(o, "checkpoint", JSON_STRING, "the bundle", &e) : NULL;
    const json_t *jk = jc != NULL ? member(o, "log_key", JSON_OBJECT, "the bundle", &e) : NULL;
    const json_t *jd = jk != NULL ? member(o, "directories", JSON_ARRAY, "the bundle", &e) : NULL;
    const json_t *jr = jd != NULL ? member(o, "records", JSON_ARRAY, "the bundle", &e) : NULL;
    const json_t *jkn = jr != NULL ? member(jk, "name", JSON_STRING, "log_key", &e) : NULL;
    const json_t *jkp = jkn != NULL ? member(jk, "public_key", JSON_STRING, "log_key", &e) : NULL;
    if (jkp == NULL) {
        goto out;
    }
    if (strcmp(json_string_value(jf), PROOF_FORMAT_V1) == 0) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "a version 1 proof bundle: made by a keten before receipt batches; ask for a new "
            "one");
        goto out;
    }
    if (strcmp(json_string_value(jf), PROOF_FORMAT) != 0) {
        e = keten_err_set(
            KETEN_ERR_MALFORMED, "format '%s' is not " PROOF_FORMAT, json_string_value(jf));
        goto out;
    }
    static const char *const bundle_fields[] = { "format", "network", "msg_id", "checkpoint",
        "log_key", "directories", "records", NULL };
    static const char *const key_fields[] = { "name", "public_key", "key_id", NULL };
    if ((e = only_fields(o, bundle_fields, "the bundle")) != KETEN_OK
        || (e = only_fields(jk, key_fields, "log_key")) != KETEN_OK) {
        goto out;
    }
    if (strcmp(json_string_value(jn), anchor->network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "the bundle is for network '%.32s', the anchor "
            "for '%s'",
            json_string_value(jn), anchor->network);
        goto out;
    }
    snprintf(res->network, sizeof res->network, "%s", anchor->network);
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    /* Lowercase only, as prove writes it: one spelling per bundle. */
    if (json_string_length(jm) != 2 * KETEN_MSG_ID_BYTES
        || strspn(json_string_value(jm), "0123456789abcdef") != 2 * KETEN_MSG_ID_BYTES
        || keten_unhex(json_string_value(jm), msg_id, sizeof msg_id) != KETEN_OK) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "msg_id is not 32 lowercase hex characters");
        goto out;
    }
    keten_hex(msg_id, sizeof msg_id, res->msg_id);
    if ((e = check_chain(jd, anchor, &chain, &n_chain)) != KETEN_OK) {
        goto out;
    }
    const char *note = json_string_value(jc);
    size_t note_len = json_string_length(jc);
    keten_checkpoint body;
    if ((e = note_body(note, note_len, &body)) != KETEN_OK) {
        goto out;
    }
    const keten_directory *dir = chain_version(chain, n_chain, body.dir_version);
    if (dir == NULL) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the checkpoint names directory version %" PRIu64 ", which the bundle's chain lacks",
            body.dir_version);
        goto out;
    }
    if (sodium_memcmp(body.dir_hash, keten_directory_hash(dir), KETEN_HASH_BYTES) != 0) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "the checkpoint names directory version %" PRIu64 " with another hash than the "
            "chain's",
            body.dir_version);
        goto out;
    }
    const Keten__NodeCert *broker = keten_directory_broker(dir);
    uint8_t *pk = NULL;
    size_t pk_len = 0;
    if (broker == NULL || broker->log_pk.len != KETEN_SIGN_PK_BYTES) {
        e = keten_err_set(KETEN_ERR_INCONSISTENT,
            "directory version %" PRIu64 " lists no broker log key", body.dir_version);
        goto out;
    }
    if ((e = b64_decode(
             jkp, "log_key.public_key", KETEN_SIGN_PK_BYTES, KETEN_SIGN_PK_BYTES, &pk, &pk_len))
        != KETEN_OK) {
        goto out;
    }
    bool same = strcmp(json_string_value(jkn), broker->id) == 0
        && sodium_memcmp(pk, broker->log_pk.data, KETEN_SIGN_PK_BYTES) == 0;
    free(pk);
    if (!same) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "log_key is not the log key of broker '%s' in directory version %" PRIu64, broker->id,
            body.dir_version);
        goto out;
    }
    snprintf(res->log_key_name, sizeof res->log_key_name, "%s", broker->id);
    keten_checkpoint cp;
    if ((e = keten_checkpoint_open(note, note_len, broker->id, broker->log_pk.data, &cp))
        != KETEN_OK) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", keten_err_detail());
        e = keten_err_set(e == KETEN_ERR_NOT_FOUND ? KETEN_ERR_BAD_SIGNATURE : e,
            "the checkpoint's signature does not verify with the broker's log key: %s", detail);
        goto out;
    }
    char origin[KETEN_ORIGIN_MAX + 1];
    snprintf(origin, sizeof origin, ORIGIN_PREFIX "%s", anchor->network);
    if (strcmp(cp.origin, origin) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK, "the checkpoint's origin is '%s', not '%s'",
            cp.origin, origin);
        goto out;
    }
    res->tree_size = cp.size;
    memcpy(res->root, cp.root, KETEN_HASH_BYTES);
    res->directory_version = cp.dir_version;
    size_t n = json_array_size(jr);
    if (n == 0 || n > PROOF_MAX_RECORDS) {
        e = keten_err_set(KETEN_ERR_MALFORMED, "the bundle holds %zu records (1..%d allowed)", n,
            PROOF_MAX_RECORDS);
        goto out;
    }
    st.heads = sigcheck_heads_new();
    if (st.heads == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "checking the bundle");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(jr, i);
        if (!json_is_object(r)) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "records[%zu] is not an object", i);
            goto out;
        }
        if ((e = check_record(r, i, &cp, chain, n_chain, msg_id, &st, res)) != KETEN_OK) {
            goto out;
        }
    }
    if ((e = keten_checkpoint_witnesses(note, note_len, dir, &res->cosigners, &res->witnessed))
        != KETEN_OK) {
        goto out;
    }
    res->quorum = keten_directory_quorum(dir);
    res->receipt_heads = sigcheck_heads_verified(st.heads);
out:
    records_free(&st.submitted);
    sigcheck_heads_destroy(&st.heads);
    for (size_t i = 0; i < n_chain; i++) {
        keten_directory_destroy(&chain[i]);
    }
    free(chain);
    json_decref(o);
    return e;
}
