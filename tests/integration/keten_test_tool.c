/*
 * keten-test-tool - makes the hostile inputs the integration tests need and
 * that the real programs, rightly, will not make:
 *
 *   keten-test-tool request KEYFILE NEW_ID OUT
 *       a correctly signed request that reuses the keys of KEYFILE (an
 *       unencrypted identity file) under another id: proof of possession
 *       holds, so only the key-reuse check can refuse it;
 *   keten-test-tool sign-directory FILE KEYFILE
 *       append to the SignedDirectory FILE a valid signature by any key
 *       (e.g. a node's), which must count for nothing;
 *   keten-test-tool events HOME AFTER
 *       the node's event log after sequence number AFTER, read from
 *       HOME/store (LMDB: while the daemon runs too) with the node's own
 *       reader: a line "oldest=N last=M reset=yes|no", then each event as
 *       the text GET /v1/events sends (client/events.h).
 *   keten-test-tool checkpoints HOME
 *       the witness checkpoints in HOME/store (the daemon stopped), in
 *       tree-size order, one line each: "SIZE ACCEPTED_AT WITNESSED
 *       EVIDENCE" (ms; 0 or 1);
 *   keten-test-tool age-checkpoints HOME FIRST COUNT AT_MS STEP_MS
 *       as if the node had accepted them in the past: the COUNT stored
 *       witness checkpoints from the FIRST-th (0: the oldest) get
 *       accepted_at AT_MS, AT_MS + STEP_MS, ... (the daemon stopped), so
 *       that a test sees the retention of a node that ran for months.
 *
 * Test-only; never installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "events.h"
#include "identity.h"
#include "node.h"
#include "nodestore.h"
#include "pb.h"
#include "store.h"
#include "util.h"

static int fail(const char *what, keten_err e)
{
    fprintf(stderr, "keten-test-tool: %s: %s: %s\n", what, keten_err_str(e), keten_err_detail());
    return 1;
}

static int make_request(const char *keyfile, const char *id, const char *out)
{
    keten_identity *ident = NULL;
    uint8_t *req = NULL;
    size_t len = 0;
    keten_err e = keten_identity_load(keyfile, NULL, 0, &ident);
    if (e != KETEN_OK) {
        return fail(keyfile, e);
    }
    snprintf(ident->id, sizeof ident->id, "%s", id);
    e = keten_identity_request(ident, "", keten_now_ms(), &req, &len);
    keten_identity_destroy(&ident);
    if (e != KETEN_OK) {
        return fail("request", e);
    }
    e = keten_file_write(out, req, len, 0644, true);
    free(req);
    return e == KETEN_OK ? 0 : fail(out, e);
}

static int sign_directory(const char *file, const char *keyfile)
{
    keten_identity *ident = NULL;
    uint8_t *buf = NULL, *out = NULL;
    size_t len = 0, out_len = 0;
    Keten__SignedDirectory *sd = NULL;
    int rc = 1;
    keten_err e = keten_identity_load(keyfile, NULL, 0, &ident);
    if (e != KETEN_OK) {
        return fail(keyfile, e);
    }
    if ((e = keten_file_read(file, KETEN_DIRECTORY_MAX, &buf, &len)) != KETEN_OK
        || (e = KETEN_PB_UNPACK(keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, file, &sd))
            != KETEN_OK
        || (e = keten_directory_sign(
                sd->directory.data, sd->directory.len, buf, len, ident->sign_sk, &out, &out_len))
            != KETEN_OK
        || (e = keten_file_write(file, out, out_len, 0644, false)) != KETEN_OK) {
        rc = fail(file, e);
    } else {
        rc = 0;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_identity_destroy(&ident);
    free(buf);
    free(out);
    return rc;
}

static int print_events(const char *home, const char *after_text)
{
    char *end = NULL;
    unsigned long long after = strtoull(after_text, &end, 10);
    if (end == after_text || *end != '\0') {
        fprintf(stderr, "keten-test-tool: AFTER is a number, not %s\n", after_text);
        return 2;
    }
    keten_node node;
    memset(&node, 0, sizeof node);
    json_t *list = NULL;
    uint64_t oldest = 0, last = 0;
    keten_err e = keten_store_open(home, &node.store);
    if (e == KETEN_OK) {
        e = keten_events_read(&node, after, 0, &list, &oldest, &last);
    }
    keten_store_destroy(&node.store);
    if (e != KETEN_OK) {
        return fail(home, e);
    }
    printf("oldest=%llu last=%llu reset=%s\n", (unsigned long long)oldest, (unsigned long long)last,
        keten_events_need_reset(after, oldest, last) ? "yes" : "no");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
        char *text = NULL;
        size_t len = 0;
        e = keten_events_format_sse(json_array_get(list, i), &text, &len);
        if (e != KETEN_OK) {
            rc = fail("event", e);
        } else {
            fwrite(text, 1, len, stdout);
        }
        free(text);
    }
    json_decref(list);
    return rc;
}

static bool number(const char *text, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "keten-test-tool: expected a number, not %s\n", text);
        return false;
    }
    *out = v;
    return true;
}

/* checkpoints HOME (age: false), or age-checkpoints HOME FIRST COUNT AT
 * STEP (age: true, the numbers in args). */
static int checkpoints(const char *home, bool age, const uint64_t args[static 4])
{
    keten_store *st = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    keten_err e = keten_store_open(home, &st);
    if (e == KETEN_OK) {
        e = keten_store_begin(st, age, &txn);
    }
    if (e == KETEN_OK
        && mdb_cursor_open(txn, keten_store_dbi(st, KETEN_DB_CHECKPOINTS), &cur) != 0) {
        e = keten_err_set(KETEN_ERR_STORE, "cannot read the checkpoints");
    }
    /* The sizes first: a record is written back by its key, not under the
     * cursor. */
    uint64_t *sizes = NULL;
    size_t n = 0;
    MDB_val k, v;
    int rc = e == KETEN_OK ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : MDB_NOTFOUND;
    while (e == KETEN_OK && rc == 0) {
        uint64_t *more = realloc(sizes, (n + 1) * sizeof *sizes);
        if (more == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "listing the checkpoints");
        } else if (k.mv_size != KETEN_STORE_U64_KEY) {
            e = keten_err_set(KETEN_ERR_MALFORMED, "a checkpoint key of %zu bytes", k.mv_size);
        }
        if (more != NULL) {
            sizes = more;
        }
        if (e == KETEN_OK) {
            sizes[n++] = keten_store_u64_get(k.mv_data);
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        Keten__CheckpointRecord *rec = NULL;
        e = keten_nodestore_checkpoint_get(st, txn, sizes[i], &rec);
        if (e == KETEN_OK && age && i >= args[0] && i - args[0] < args[1]) {
            rec->accepted_at = args[2] + (i - args[0]) * args[3];
            e = keten_nodestore_checkpoint_put(st, txn, rec);
        } else if (e == KETEN_OK && !age) {
            printf("%llu %llu %d %d\n", (unsigned long long)rec->size,
                (unsigned long long)rec->accepted_at, rec->witnessed ? 1 : 0,
                rec->evidence ? 1 : 0);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
    }
    if (e == KETEN_OK && age) {
        e = keten_store_commit(&txn);
    }
    keten_store_abort(&txn);
    keten_store_destroy(&st);
    free(sizes);
    return e == KETEN_OK ? 0 : fail(home, e);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        return 1;
    }
    if (argc == 5 && strcmp(argv[1], "request") == 0) {
        return make_request(argv[2], argv[3], argv[4]);
    }
    if (argc == 4 && strcmp(argv[1], "sign-directory") == 0) {
        return sign_directory(argv[2], argv[3]);
    }
    if (argc == 4 && strcmp(argv[1], "events") == 0) {
        return print_events(argv[2], argv[3]);
    }
    uint64_t args[4] = { 0, 0, 0, 0 };
    if (argc == 3 && strcmp(argv[1], "checkpoints") == 0) {
        return checkpoints(argv[2], false, args);
    }
    if (argc == 7 && strcmp(argv[1], "age-checkpoints") == 0) {
        for (int i = 0; i < 4; i++) {
            if (!number(argv[3 + i], &args[i])) {
                return 2;
            }
        }
        return checkpoints(argv[2], true, args);
    }
    fprintf(stderr,
        "usage: keten-test-tool request KEYFILE NEW_ID OUT\n"
        "       keten-test-tool sign-directory FILE KEYFILE\n"
        "       keten-test-tool events HOME AFTER\n"
        "       keten-test-tool checkpoints HOME\n"
        "       keten-test-tool age-checkpoints HOME FIRST COUNT AT_MS STEP_MS\n");
    return 2;
}
