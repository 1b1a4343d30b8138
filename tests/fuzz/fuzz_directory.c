/*
 * fuzz_directory.c - the signed directory (keten_directory_verify) against
 * the test network's anchor and against its version 1, and the trust
 * anchor itself (keten_directory_anchor_parse).
 *
 * Each input is tried as it is and once more re-signed: when it parses as a
 * SignedDirectory, the Directory bytes inside are signed again by the test
 * administrators (0 and 1 for the anchor, 1 and 2 after version 1), so that
 * mutated directories reach every check behind the signatures.
 *
 * Invariants for a directory that verifies:
 *   1. the object holds exactly the input bytes, its hash is the SHA-256 of
 *      the Directory bytes, the network is the anchor's, and
 *      keten_directory_check() passes on the document;
 *   2. at least threshold distinct administrators of the predecessor signed
 *      it; after a predecessor its version is higher;
 *   3. the indexes agree with the document: every listed certificate is
 *      found by id, signing key and transport key; at most one broker;
 *      "*" resolves to exactly the partner nodes; the quorum is 1..partners;
 *   4. verifying with the time checks implies verifying without them;
 *   5. once installed, the same bytes again are a rollback.
 * For an anchor that parses: it is canonical, its threshold is 1..n over
 * distinct 32-byte keys, and the test directory verifies against it exactly
 * when it is the test anchor or names the same network, keys and threshold.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "fuzz_common.h"
#include "pb.h"

static void check_installed(const keten_directory *d, const keten_directory *prev,
    const Keten__Anchor *anchor, const uint8_t *data, size_t size)
{
    size_t len = 0;
    const uint8_t *bytes = keten_directory_bytes(d, &len);
    FUZZ_CHECK(len == size && memcmp(bytes, data, size) == 0);
    Keten__SignedDirectory *sd = NULL;
    FUZZ_MUST(KETEN_PB_UNPACK(keten__signed_directory, data, size, KETEN_DIRECTORY_MAX, "d", &sd));
    FUZZ_CHECK(fuzz_packs_to(&sd->base, data, size));
    uint8_t hash[KETEN_HASH_BYTES];
    crypto_hash_sha256(hash, sd->directory.data, sd->directory.len);
    FUZZ_CHECK(memcmp(hash, keten_directory_hash(d), sizeof hash) == 0);
    const Keten__Directory *doc = keten_directory_doc(d);
    FUZZ_CHECK(fuzz_packs_to(&doc->base, sd->directory.data, sd->directory.len));
    FUZZ_CHECK(strcmp(keten_directory_network(d), FUZZ_NETWORK) == 0);
    FUZZ_MUST(keten_directory_check(doc));
    FUZZ_CHECK(doc->issued_at < doc->expires_at);

    /* 2 */
    ProtobufCBinaryData *admins = prev != NULL ? keten_directory_doc(prev)->admins : anchor->admins;
    size_t n_admins = prev != NULL ? keten_directory_doc(prev)->n_admins : anchor->n_admins;
    uint32_t threshold = prev != NULL ? keten_directory_doc(prev)->threshold : anchor->threshold;
    size_t count = 0;
    FUZZ_MUST(keten_directory_count_signatures(sd, admins, n_admins, &count));
    FUZZ_CHECK(count >= threshold);
    if (prev != NULL) {
        FUZZ_CHECK(keten_directory_version(d) > keten_directory_version(prev));
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);

    /* 3 */
    size_t partners = 0;
    size_t brokers = 0;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        const Keten__NodeCert *c = doc->nodes[i];
        FUZZ_CHECK(keten_directory_find_id(d, c->id) == c);
        FUZZ_CHECK(c->sign_pk.len == KETEN_SIGN_PK_BYTES
            && keten_directory_find_sign_key(d, c->sign_pk.data) == c);
        FUZZ_CHECK(c->transport_pk.len == KETEN_CURVE_KEY_BYTES
            && keten_directory_find_transport(d, c->transport_pk.data) == c);
        if (strcmp(c->role, "broker") == 0) {
            brokers++;
            FUZZ_CHECK(keten_directory_broker(d) == c);
        } else {
            partners++;
        }
    }
    FUZZ_CHECK(brokers <= 1 && (brokers == 1 || keten_directory_broker(d) == NULL));
    FUZZ_CHECK(keten_directory_partner_count(d) == partners);
    const char **ids = NULL;
    size_t n_ids = 0;
    keten_err er = keten_directory_resolve(d, "*", &ids, &n_ids);
    FUZZ_CHECK(
        partners == 0 ? er == KETEN_ERR_UNKNOWN_NODE : (er == KETEN_OK && n_ids == partners));
    free(ids);
    if (partners > 0 && doc->witness_quorum == 0) {
        FUZZ_CHECK(keten_directory_quorum(d) >= 1 && keten_directory_quorum(d) <= partners);
    }
    for (size_t i = 0; i < doc->n_categories; i++) {
        FUZZ_CHECK(keten_directory_category_registered(d, doc->categories[i]));
    }
    for (size_t i = 0; i < doc->n_purposes; i++) {
        FUZZ_CHECK(keten_directory_purpose_registered(d, doc->purposes[i]));
    }

    /* 5 */
    keten_directory *again = NULL;
    FUZZ_CHECK(keten_directory_verify(NULL, d, data, size, 0, &again) == KETEN_ERR_ROLLBACK);
    FUZZ_CHECK(again == NULL);
}

static void verify_all(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    const keten_directory *prevs[2] = { NULL, net->d1 };
    for (size_t k = 0; k < 2; k++) {
        keten_directory *timed = NULL;
        keten_directory *untimed = NULL;
        keten_err et
            = keten_directory_verify(net->anchor, prevs[k], data, size, FUZZ_T_DIR, &timed);
        keten_err eu = keten_directory_verify(net->anchor, prevs[k], data, size, 0, &untimed);
        /* 4 */
        if (et == KETEN_OK) {
            FUZZ_CHECK(eu == KETEN_OK);
            check_installed(timed, prevs[k], net->anchor, data, size);
        } else {
            FUZZ_CHECK(timed == NULL);
        }
        if (eu == KETEN_OK) {
            check_installed(untimed, prevs[k], net->anchor, data, size);
        } else {
            FUZZ_CHECK(untimed == NULL);
        }
        keten_directory_destroy(&timed);
        keten_directory_destroy(&untimed);
    }
}

static void resigned(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    Keten__SignedDirectory *sd = NULL;
    if (KETEN_PB_UNPACK(keten__signed_directory, data, size, KETEN_DIRECTORY_MAX, "d", &sd)
        != KETEN_OK) {
        return;
    }
    static const size_t pairs[2][2] = { { 0, 1 }, { 1, 2 } };
    for (size_t k = 0; k < 2; k++) {
        uint8_t *one = NULL;
        size_t one_len = 0;
        uint8_t *two = NULL;
        size_t two_len = 0;
        if (keten_directory_sign(sd->directory.data, sd->directory.len, NULL, 0,
                net->admin_sk[pairs[k][0]], &one, &one_len)
                == KETEN_OK
            && keten_directory_sign(sd->directory.data, sd->directory.len, one, one_len,
                   net->admin_sk[pairs[k][1]], &two, &two_len)
                == KETEN_OK) {
            verify_all(two, two_len);
        }
        free(one);
        free(two);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
}

static bool same_anchor(const Keten__Anchor *a, const Keten__Anchor *b)
{
    if (strcmp(a->network, b->network) != 0 || a->threshold != b->threshold
        || a->n_admins != b->n_admins) {
        return false;
    }
    for (size_t i = 0; i < a->n_admins; i++) {
        bool found = false;
        for (size_t j = 0; j < b->n_admins && !found; j++) {
            found = a->admins[i].len == b->admins[j].len
                && memcmp(a->admins[i].data, b->admins[j].data, a->admins[i].len) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

static void anchor(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    Keten__Anchor *a = NULL;
    if (keten_directory_anchor_parse(data, size, &a) != KETEN_OK) {
        FUZZ_CHECK(a == NULL);
        return;
    }
    FUZZ_CHECK(fuzz_packs_to(&a->base, data, size));
    FUZZ_CHECK(a->n_admins >= 1 && a->n_admins <= KETEN_MAX_ADMINS);
    FUZZ_CHECK(a->threshold >= 1 && a->threshold <= a->n_admins);
    for (size_t i = 0; i < a->n_admins; i++) {
        FUZZ_CHECK(a->admins[i].len == KETEN_SIGN_PK_BYTES);
        for (size_t j = 0; j < i; j++) {
            FUZZ_CHECK(memcmp(a->admins[i].data, a->admins[j].data, KETEN_SIGN_PK_BYTES) != 0);
        }
    }
    keten_directory *d = NULL;
    keten_err e = keten_directory_verify(a, NULL, net->dir1, net->dir1_len, FUZZ_T_DIR, &d);
    if (same_anchor(a, net->anchor)) {
        FUZZ_CHECK(e == KETEN_OK);
    }
    if (e == KETEN_OK) {
        Keten__SignedDirectory *sd = NULL;
        FUZZ_MUST(KETEN_PB_UNPACK(
            keten__signed_directory, net->dir1, net->dir1_len, KETEN_DIRECTORY_MAX, "d", &sd));
        size_t count = 0;
        FUZZ_MUST(keten_directory_count_signatures(sd, a->admins, a->n_admins, &count));
        FUZZ_CHECK(count >= a->threshold);
        FUZZ_CHECK(strcmp(a->network, FUZZ_NETWORK) == 0);
        keten_pb_free((ProtobufCMessage **)(void *)&sd);
    }
    keten_directory_destroy(&d);
    keten_pb_free((ProtobufCMessage **)(void *)&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_net();
    anchor(data, size);
    verify_all(data, size);
    resigned(data, size);
    keten_err_clear();
    return 0;
}
