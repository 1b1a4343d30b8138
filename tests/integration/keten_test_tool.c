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
    fprintf(stderr,
        "usage: keten-test-tool request KEYFILE NEW_ID OUT\n"
        "       keten-test-tool sign-directory FILE KEYFILE\n"
        "       keten-test-tool events HOME AFTER\n");
    return 2;
}
