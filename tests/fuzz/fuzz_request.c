/*
 * fuzz_request.c - the enrollment request (keten_identity_request_verify), as an
 * administrator reads what a node hands over.
 *
 * Each input is tried as it is, and once more re-signed: when it parses
 * and its signing (or log) key is one of the test network's, the request
 * bytes inside are signed again with that key, so that mutations of the
 * request reach the checks behind the proof of possession.
 *
 * Invariants for every request keten_identity_request_verify accepts:
 *   1. the bytes are canonical (the SignedRequest packs back to them) and
 *      the returned request is the one inside them;
 *   2. id and role are valid names, the organisation is 1..128 bytes with
 *      no control characters, the keys are 32 bytes, a log key and a log
 *      signature exactly for role "broker";
 *   3. the proof(s) of possession verify on their own;
 *   4. it can be approved into a fresh draft of the test network (unless it
 *      names another network), and the directory published from that draft
 *      verifies against the anchor and lists the request's keys.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dirbuild.h"
#include "fuzz_common.h"
#include "pb.h"
#include "util.h"

#define LABEL_REQUEST_LEN (sizeof KETEN_LABEL_REQUEST - 1)

static bool sig_ok(
    const ProtobufCBinaryData *sig, const ProtobufCBinaryData *req, const ProtobufCBinaryData *pk)
{
    if (sig->len != KETEN_SIG_BYTES || pk->len != KETEN_SIGN_PK_BYTES) {
        return false;
    }
    uint8_t *m = malloc(LABEL_REQUEST_LEN + req->len);
    FUZZ_CHECK(m != NULL);
    memcpy(m, KETEN_LABEL_REQUEST, LABEL_REQUEST_LEN);
    if (req->len > 0) {
        memcpy(m + LABEL_REQUEST_LEN, req->data, req->len);
    }
    bool ok
        = crypto_sign_verify_detached(sig->data, m, LABEL_REQUEST_LEN + req->len, pk->data) == 0;
    free(m);
    return ok;
}

static bool org_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > KETEN_ORG_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool same_key(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void enroll(const Keten__NodeRequest *req)
{
    const fuzz_network *net = fuzz_net();
    keten_dirbuild *draft = NULL;
    FUZZ_MUST(keten_dirbuild_new(FUZZ_NETWORK, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])net->admin_pk,
        FUZZ_N_ADMINS, FUZZ_THRESHOLD, &draft));
    uint64_t serial = 0;
    keten_err e = keten_dirbuild_approve(draft, req, FUZZ_T0, FUZZ_CERT_VALID_MS, false, &serial);
    if (req->network[0] != '\0' && strcmp(req->network, FUZZ_NETWORK) != 0) {
        FUZZ_CHECK(e == KETEN_ERR_WRONG_NETWORK);
        keten_dirbuild_destroy(&draft);
        return;
    }
    if (e != KETEN_OK) {
        fuzz_fail(__FILE__, __LINE__, "a verified request cannot be approved into a fresh draft");
    }
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    uint8_t *one = NULL;
    size_t one_len = 0;
    uint8_t *two = NULL;
    size_t two_len = 0;
    FUZZ_MUST(keten_dirbuild_finish(draft, FUZZ_T0, FUZZ_DIR_VALID_MS, &dir, &dir_len));
    FUZZ_MUST(keten_directory_sign(dir, dir_len, NULL, 0, net->admin_sk[0], &one, &one_len));
    FUZZ_MUST(keten_directory_sign(dir, dir_len, one, one_len, net->admin_sk[1], &two, &two_len));
    keten_directory *d = NULL;
    FUZZ_MUST(keten_directory_verify(net->anchor, NULL, two, two_len, FUZZ_T_DIR, &d));
    const Keten__NodeCert *c = keten_directory_find_id(d, req->id);
    FUZZ_CHECK(c != NULL && c->serial == serial);
    FUZZ_CHECK(strcmp(c->role, req->role) == 0 && strcmp(c->org, req->org) == 0);
    FUZZ_CHECK(same_key(&c->sign_pk, &req->sign_pk) && same_key(&c->enc_pk, &req->enc_pk)
        && same_key(&c->transport_pk, &req->transport_pk) && same_key(&c->log_pk, &req->log_pk));
    keten_directory_destroy(&d);
    free(two);
    free(one);
    free(dir);
    keten_dirbuild_destroy(&draft);
}

static void check(const uint8_t *data, size_t size)
{
    Keten__NodeRequest *req = NULL;
    if (keten_identity_request_verify(data, size, &req) != KETEN_OK) {
        FUZZ_CHECK(req == NULL);
        return;
    }
    /* 1 */
    Keten__SignedRequest *sr = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__signed_request, data, size, KETEN_REQUEST_MAX, "r", &sr));
    FUZZ_CHECK(fuzz_packs_to(&sr->base, data, size));
    FUZZ_CHECK(fuzz_packs_to(&req->base, sr->request.data, sr->request.len));
    /* 2 */
    bool broker = strcmp(req->role, "broker") == 0;
    FUZZ_CHECK(keten_name_valid(req->id) && keten_name_valid(req->role) && org_ok(req->org));
    FUZZ_CHECK(req->sign_pk.len == 32 && req->enc_pk.len == 32 && req->transport_pk.len == 32);
    FUZZ_CHECK(req->log_pk.len == (broker ? 32u : 0u));
    FUZZ_CHECK(sr->log_signature.len == (broker ? (size_t)KETEN_SIG_BYTES : 0u));
    /* 3 */
    FUZZ_CHECK(sig_ok(&sr->signature, &sr->request, &req->sign_pk));
    FUZZ_CHECK(!broker || sig_ok(&sr->log_signature, &sr->request, &req->log_pk));
    keten_pb_free((ProtobufCMessage **)(void *)&sr);
    /* 4 */
    enroll(req);
    keten_pb_free((ProtobufCMessage **)(void *)&req);
}

/* The test identity whose signing key is pk, or NULL. */
static const keten_identity *owner_of(const ProtobufCBinaryData *pk)
{
    const fuzz_network *net = fuzz_net();
    if (pk->len != KETEN_SIGN_PK_BYTES) {
        return NULL;
    }
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        if (memcmp(net->nodes[i]->sign_pk, pk->data, KETEN_SIGN_PK_BYTES) == 0) {
            return net->nodes[i];
        }
    }
    if (memcmp(net->politie2->sign_pk, pk->data, KETEN_SIGN_PK_BYTES) == 0) {
        return net->politie2;
    }
    return NULL;
}

static void resigned(const uint8_t *data, size_t size)
{
    Keten__SignedRequest *sr = NULL;
    Keten__NodeRequest *req = NULL;
    if (KETEN_PB_UNPACK(keten__signed_request, data, size, KETEN_REQUEST_MAX, "r", &sr) != KETEN_OK
        || KETEN_PB_UNPACK(
               keten__node_request, sr->request.data, sr->request.len, KETEN_REQUEST_MAX, "r", &req)
            != KETEN_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&sr);
        return;
    }
    const keten_identity *who = owner_of(&req->sign_pk);
    if (who != NULL) {
        size_t m_len = LABEL_REQUEST_LEN + sr->request.len;
        uint8_t *m = malloc(m_len);
        FUZZ_CHECK(m != NULL);
        memcpy(m, KETEN_LABEL_REQUEST, LABEL_REQUEST_LEN);
        if (sr->request.len > 0) {
            memcpy(m + LABEL_REQUEST_LEN, sr->request.data, sr->request.len);
        }
        uint8_t sig[KETEN_SIG_BYTES];
        uint8_t log_sig[KETEN_SIG_BYTES];
        FUZZ_CHECK(crypto_sign_detached(sig, NULL, m, m_len, who->sign_sk) == 0);
        ProtobufCBinaryData old_sig = sr->signature;
        ProtobufCBinaryData old_log = sr->log_signature;
        sr->signature.data = sig;
        sr->signature.len = sizeof sig;
        if (who->has_log_key && req->log_pk.len == KETEN_SIGN_PK_BYTES
            && memcmp(req->log_pk.data, who->log_pk, KETEN_SIGN_PK_BYTES) == 0) {
            FUZZ_CHECK(crypto_sign_detached(log_sig, NULL, m, m_len, who->log_sk) == 0);
            sr->log_signature.data = log_sig;
            sr->log_signature.len = sizeof log_sig;
        }
        free(m);
        uint8_t *b = NULL;
        size_t len = 0;
        FUZZ_MUST(keten_pb_pack(&sr->base, &b, &len));
        sr->signature = old_sig;
        sr->log_signature = old_log;
        check(b, len);
        free(b);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&req);
    keten_pb_free((ProtobufCMessage **)(void *)&sr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    check(data, size);
    resigned(data, size);
    keten_err_clear();
    return 0;
}
