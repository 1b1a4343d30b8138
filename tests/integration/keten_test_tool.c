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
 *       (e.g. a node's), which must count for nothing.
 *
 * Test-only; never installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "identity.h"
#include "pb.h"
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
    fprintf(stderr,
        "usage: keten-test-tool request KEYFILE NEW_ID OUT\n"
        "       keten-test-tool sign-directory FILE KEYFILE\n");
    return 2;
}
