/*
 * fuzz_proof.c - proof bundles as keten-audit check-proof reads them
 * (audit/proof.c: proof_check against the anchor of the test network of
 * fuzz_common.h).
 *
 * Invariants, for an accepted bundle, checked again here without proof.c:
 *   1. the bundle is a JSON object of format keten-proof/v2 for the test
 *      network, and the result names its msg_id;
 *   2. its checkpoint is signed by the broker's log key of the test network
 *      and has the result's tree size and root; the result's directory
 *      version is one of the network's (1 or 2);
 *   3. it holds as many records as the result, each a canonical AuditRecord
 *      of msg_id whose seq is its leaf_index, in strictly increasing order,
 *      whose leaf and audit path lead to that root at that tree size (RFC
 *      9162), with the result's event; the first is the submitted record;
 *   4. cosignatures: at most one per partner (4), and "witnessed" exactly
 *      when they reach the quorum;
 *   5. the same bytes are accepted again with the same result (no state);
 *   6. strict: the bundle written again by jansson is accepted with the same
 *      result, and with one field more (one a v2 bundle does not have) in
 *      the bundle, in its log_key or in any one record it is refused as
 *      malformed.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_common.h"
#include "logproof.h"
#include "merkle.h"
#include "pb.h"
#include "proof.h"
#include "util.h"

#define PARTNERS (FUZZ_N_NODES - 1)

/* Standard base64 of a JSON string (malloc), or NULL. */
static uint8_t *unb64(const json_t *j, size_t *len)
{
    const char *s = json_string_value(j);
    if (s == NULL) {
        return NULL;
    }
    size_t slen = strlen(s);
    uint8_t *buf = malloc(slen / 4 * 3 + 3);
    FUZZ_CHECK(buf != NULL);
    const char *end = NULL;
    if (sodium_base642bin(buf, slen / 4 * 3 + 3, s, slen, NULL, len, &end,
            sodium_base64_VARIANT_ORIGINAL)
            != 0
        || end != s + slen) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void check_accepted(const uint8_t *data, size_t size, const proof_result *res)
{
    const keten_identity *broker = fuzz_node(FUZZ_BROKER);
    json_t *o = json_loadb((const char *)data, size, 0, NULL);
    /* 1 */
    FUZZ_CHECK(json_is_object(o));
    const char *format = json_string_value(json_object_get(o, "format"));
    FUZZ_CHECK(format != NULL && strcmp(format, PROOF_FORMAT) == 0);
    FUZZ_CHECK(strcmp(res->network, FUZZ_NETWORK) == 0);
    const char *msg_hex = json_string_value(json_object_get(o, "msg_id"));
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    FUZZ_CHECK(msg_hex != NULL && strlen(msg_hex) == 2 * KETEN_MSG_ID_BYTES
        && keten_unhex(msg_hex, msg_id, sizeof msg_id) == KETEN_OK);
    char again[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, KETEN_MSG_ID_BYTES, again);
    FUZZ_CHECK(strcmp(res->msg_id, again) == 0);
    /* 2 */
    const json_t *jc = json_object_get(o, "checkpoint");
    const char *note = json_string_value(jc);
    FUZZ_CHECK(note != NULL);
    keten_checkpoint cp;
    FUZZ_CHECK(keten_checkpoint_open(note, json_string_length(jc), FUZZ_BROKER, broker->log_pk, &cp)
        == KETEN_OK);
    FUZZ_CHECK(strcmp(res->log_key_name, FUZZ_BROKER) == 0);
    FUZZ_CHECK(cp.size == res->tree_size && memcmp(cp.root, res->root, sizeof cp.root) == 0);
    FUZZ_CHECK(cp.dir_version == res->directory_version);
    FUZZ_CHECK(res->directory_version == 1 || res->directory_version == 2);
    /* 3 */
    const json_t *recs = json_object_get(o, "records");
    FUZZ_CHECK(json_is_array(recs) && json_array_size(recs) == res->n_records);
    FUZZ_CHECK(res->n_records > 0);
    for (size_t i = 0; i < res->n_records; i++) {
        const json_t *jr = json_array_get(recs, i);
        json_int_t index = json_integer_value(json_object_get(jr, "leaf_index"));
        json_int_t tsize = json_integer_value(json_object_get(jr, "tree_size"));
        FUZZ_CHECK(index >= 0 && (uint64_t)index == res->records[i].leaf_index);
        FUZZ_CHECK(tsize >= 0 && (uint64_t)tsize == res->tree_size);
        FUZZ_CHECK(i == 0 || res->records[i].leaf_index > res->records[i - 1].leaf_index);
        size_t leaf_len = 0;
        uint8_t *leaf = unb64(json_object_get(jr, "leaf"), &leaf_len);
        FUZZ_CHECK(leaf != NULL);
        Keten__AuditRecord *rec = NULL;
        FUZZ_MUST(KETEN_PB_UNPACK_CANONICAL(
            keten__audit_record, leaf, leaf_len, KETEN_AUDIT_RECORD_MAX, "record", &rec));
        FUZZ_CHECK(rec->seq == (uint64_t)index);
        FUZZ_CHECK(rec->msg_id.len == KETEN_MSG_ID_BYTES
            && memcmp(rec->msg_id.data, msg_id, KETEN_MSG_ID_BYTES) == 0);
        FUZZ_CHECK((int)rec->event == res->records[i].event);
        FUZZ_CHECK(i > 0 || rec->event == KETEN__EVENT__EVENT_SUBMITTED);
        const json_t *jp = json_object_get(jr, "audit_path");
        size_t n_path = json_array_size(jp);
        FUZZ_CHECK(n_path <= KETEN_MERKLE_MAX_PROOF);
        ProtobufCBinaryData path[KETEN_MERKLE_MAX_PROOF];
        for (size_t k = 0; k < n_path; k++) {
            path[k].data = unb64(json_array_get(jp, k), &path[k].len);
            FUZZ_CHECK(path[k].data != NULL);
        }
        keten_hash lh;
        keten_hash root;
        keten_merkle_leaf_hash(leaf, leaf_len, lh);
        FUZZ_CHECK(fuzz_root_from_path(lh, (uint64_t)index, res->tree_size, path, n_path, root));
        FUZZ_CHECK(memcmp(root, res->root, sizeof root) == 0);
        for (size_t k = 0; k < n_path; k++) {
            free(path[k].data);
        }
        keten_pb_free((ProtobufCMessage **)(void *)&rec);
        free(leaf);
    }
    /* 4 */
    FUZZ_CHECK(res->cosigners <= PARTNERS);
    FUZZ_CHECK(res->witnessed == (res->cosigners >= res->quorum && res->quorum > 0));
    json_decref(o);
}

/* proof_check of o written out again (compact). */
static keten_err check_json(const json_t *o, proof_result *res)
{
    char *text = json_dumps(o, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    keten_err e = proof_check((const uint8_t *)text, strlen(text), fuzz_net()->anchor, res);
    free(text);
    return e;
}

/* o with "unknown_field": 0 added to what pick chooses: 0 the bundle,
 * 1 its log_key, 2 + i its record i; refused. */
static void check_extra(const json_t *o, size_t pick)
{
    json_t *copy = json_deep_copy(o);
    FUZZ_CHECK(copy != NULL);
    json_t *target = pick == 0 ? copy
        : pick == 1            ? json_object_get(copy, "log_key")
                               : json_array_get(json_object_get(copy, "records"), pick - 2);
    FUZZ_CHECK(json_is_object(target));
    FUZZ_CHECK(json_object_get(target, "unknown_field") == NULL);
    FUZZ_CHECK(json_object_set_new(target, "unknown_field", json_integer(0)) == 0);
    proof_result *r = calloc(1, sizeof *r);
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(check_json(copy, r) == KETEN_ERR_MALFORMED);
    free(r);
    json_decref(copy);
}

static void check_strict(const uint8_t *data, size_t size, const proof_result *res)
{
    json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(o));
    proof_result *again = calloc(1, sizeof *again);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(check_json(o, again) == KETEN_OK);
    FUZZ_CHECK(memcmp(again, res, sizeof *res) == 0);
    free(again);
    size_t n = 2 + json_array_size(json_object_get(o, "records"));
    for (size_t pick = 0; pick < n; pick++) {
        check_extra(o, pick);
    }
    json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_network *net = fuzz_net();
    proof_result *res = calloc(1, sizeof *res);
    FUZZ_CHECK(res != NULL);
    keten_err e = proof_check(data, size, net->anchor, res);
    if (e == KETEN_OK) {
        check_accepted(data, size, res);
        /* 5 */
        proof_result *res2 = calloc(1, sizeof *res2);
        FUZZ_CHECK(res2 != NULL);
        FUZZ_CHECK(proof_check(data, size, net->anchor, res2) == KETEN_OK);
        FUZZ_CHECK(memcmp(res, res2, sizeof *res) == 0);
        free(res2);
        /* 6 */
        check_strict(data, size, res);
    } else {
        FUZZ_CHECK(e != KETEN_ERR_NOMEM || size > PROOF_MAX);
    }
    keten_err_clear();
    free(res);
    return 0;
}
