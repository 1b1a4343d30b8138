/*
 * fixture_seal.c - seal a signal JSON text inside the test network (see
 * fixture.h), with the same library calls a node's `send` uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envelope.h"
#include "fixture.h"
#include "signal_json.h"
#include "util.h"

#define FIXTURE_SEAL_LIFETIME_MS (3600ull * 1000ull)

uint8_t *fixture_seal(fixture *self, const char *from, const char *to, const char *json,
    uint8_t *msg_id_out, size_t *len_out)
{
    keten_identity *sender = fixture_node(self, from);
    if (sender == NULL) {
        fail_msg("fixture_seal: no node '%s' in the fixture", from);
    }
    const char **ids = NULL;
    size_t n_ids = 0;
    keten_err e = keten_directory_resolve(self->directory, to, &ids, &n_ids);
    if (e != KETEN_OK) {
        fail_msg("fixture_seal: resolving '%s': %s: %s", to, keten_err_str(e), keten_err_detail());
    }
    Keten__Signal *sig = NULL;
    e = keten_signal_json_parse(json, strlen(json), &sig);
    if (e != KETEN_OK) {
        free(ids);
        fail_msg("fixture_seal: signal JSON: %s: %s", keten_err_str(e), keten_err_detail());
    }
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    e = keten_signal_json_pack(sig, &payload, &payload_len);
    if (e != KETEN_OK) {
        keten_signal_json_free(&sig);
        free(ids);
        fail_msg("fixture_seal: packing the signal: %s: %s", keten_err_str(e), keten_err_detail());
    }
    uint64_t now = keten_now_ms();
    keten_envelope_seal_params params = {
        .kind = KETEN__KIND__KIND_SIGNAL,
        .category = sig->type,
        .purpose = sig->purpose,
        .in_reply_to = NULL,
        .created_at = now,
        .expires_at = now + FIXTURE_SEAL_LIFETIME_MS,
    };
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    uint8_t *out = NULL;
    size_t out_len = 0;
    e = keten_envelope_seal(
        sender, self->directory, ids, n_ids, &params, payload, payload_len, msg_id, &out, &out_len);
    free(payload);
    keten_signal_json_free(&sig);
    free(ids);
    if (e != KETEN_OK) {
        fail_msg("fixture_seal: sealing from %s to %s: %s: %s", from, to, keten_err_str(e),
            keten_err_detail());
    }
    if (msg_id_out != NULL) {
        memcpy(msg_id_out, msg_id, KETEN_MSG_ID_BYTES);
    }
    *len_out = out_len;
    return out;
}
