/*
 * keten-selfcheck: the library's whole round trip in one process, without
 * daemons (the four-partner demo, scripts/demo-network.sh, runs the real
 * programs). In a temporary directory it makes an administrator key, two node
 * identities (written to and read back from passphrase-protected key files),
 * a signed directory with one sharing rule, then seals a signal from the
 * municipality to the police, opens it as the police node, and prints what
 * the police node sees. Exits non-zero if any step fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dirbuild.h"
#include "directory.h"
#include "envelope.h"
#include "identity.h"
#include "keten.h"
#include "pb.h"
#include "signal_json.h"
#include "util.h"

static const char example_json[]
    = "{\"type\":\"woonfraude\",\"purpose\":\"riec-convenant/art-5\","
      "\"summary\":\"Adres staat op naam van 9 personen; ramen afgeplakt\","
      "\"nature\":\"soft\",\"grading\":{\"source\":\"B\",\"information\":\"2\"},"
      "\"handling\":\"TLP:AMBER\",\"observed_at\":\"2026-11-19T10:30:00Z\","
      "\"observed_by\":\"handhaver\","
      "\"subjects\":[{\"kind\":\"address\",\"value\":\"Hoofdstraat 1, 1111 AA Diemen\"}]}";

static const uint8_t pass[] = "selfcheck passphrase";

static int fail(const char *step, keten_err e)
{
    fprintf(stderr, "keten-selfcheck: %s failed: %s: %s\n", step, keten_err_str(e),
        keten_err_detail());
    return 1;
}

static keten_err make_node(const char *dir, const char *id, const char *role, const char *org,
    keten_identity **out, uint8_t **req, size_t *req_len)
{
    keten_identity *fresh = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.secret", dir, id);
    keten_err e = keten_identity_generate(id, role, org, false, &fresh);
    if (e == KETEN_OK) {
        e = keten_identity_save(fresh, path, pass, sizeof pass - 1);
    }
    keten_identity_destroy(&fresh);
    if (e == KETEN_OK) {
        e = keten_identity_load(path, pass, sizeof pass - 1, out);
    }
    if (e == KETEN_OK) {
        e = keten_identity_request(*out, "selfcheck", keten_now_ms(), req, req_len);
    }
    return e;
}

int main(void)
{
    keten_err e = keten_init();
    if (e != KETEN_OK) {
        return fail("initialisation", e);
    }
    char tmp[] = "/tmp/keten-selfcheck-XXXXXX";
    if (mkdtemp(tmp) == NULL) {
        perror("keten-selfcheck: mkdtemp");
        return 1;
    }
    int rc = 1;
    keten_identity *gemeente = NULL, *politie = NULL;
    uint8_t *req_g = NULL, *req_p = NULL, *dir_bytes = NULL, *signed_dir = NULL;
    uint8_t *anchor_bytes = NULL, *payload = NULL, *env = NULL;
    size_t req_g_len, req_p_len, dir_len, signed_len, anchor_len, payload_len, env_len;
    keten_dirbuild *draft = NULL;
    keten_directory *dir = NULL;
    Keten__NodeRequest *rq = NULL;
    Keten__Anchor *anchor = NULL;
    Keten__Signal *signal = NULL, *opened = NULL;
    keten_envelope_verified *verified = NULL;
    char *json = NULL;
    uint8_t *admin_sk = sodium_malloc(KETEN_SIGN_SK_BYTES);
    uint8_t admin_pk[1][KETEN_SIGN_PK_BYTES];
    uint64_t now = keten_now_ms();

    printf("1. An administrator makes a signing key (the network's trust anchor).\n");
    if (admin_sk == NULL || crypto_sign_keypair(admin_pk[0], admin_sk) != 0) {
        fprintf(stderr, "keten-selfcheck: cannot make an administrator key\n");
        goto out;
    }
    printf("2. Two partners make their own keys: gemeente-diemen and politie-mn.\n");
    if ((e = make_node(tmp, "gemeente-diemen", "municipality", "Gemeente Diemen", &gemeente,
             &req_g, &req_g_len))
        != KETEN_OK) {
        rc = fail("making the municipality's keys", e);
        goto out;
    }
    if ((e = make_node(tmp, "politie-mn", "police", "Politie Midden-Nederland", &politie, &req_p,
             &req_p_len))
        != KETEN_OK) {
        rc = fail("making the police keys", e);
        goto out;
    }
    printf("3. The administrator approves both, registers a category and a purpose,\n"
           "   allows municipality -> police, and signs directory version 1.\n");
    if ((e = keten_dirbuild_new("selfcheck", (const uint8_t(*)[KETEN_SIGN_PK_BYTES])admin_pk, 1,
             1, &draft))
        != KETEN_OK) {
        rc = fail("starting a directory", e);
        goto out;
    }
    const uint8_t *reqs[2] = { req_g, req_p };
    size_t req_lens[2] = { req_g_len, req_p_len };
    for (int i = 0; i < 2; i++) {
        uint64_t serial;
        if ((e = keten_identity_request_verify(reqs[i], req_lens[i], &rq)) != KETEN_OK
            || (e = keten_dirbuild_approve(draft, rq, now, 30 * KETEN_MS_PER_DAY, false, &serial))
                != KETEN_OK) {
            rc = fail("approving a request", e);
            goto out;
        }
        keten_pb_free((ProtobufCMessage **)&rq);
    }
    uint32_t rule;
    if ((e = keten_dirbuild_register(draft, "woonfraude", "riec-convenant/art-5")) != KETEN_OK
        || (e = keten_dirbuild_add_rule(draft, KETEN__EFFECT__EFFECT_ALLOW, "role:municipality",
                "role:police", "woonfraude", NULL, NULL, &rule))
            != KETEN_OK
        || (e = keten_dirbuild_finish(draft, now, 14 * KETEN_MS_PER_DAY, &dir_bytes, &dir_len))
            != KETEN_OK
        || (e = keten_directory_sign(dir_bytes, dir_len, NULL, 0, admin_sk, &signed_dir,
                &signed_len))
            != KETEN_OK) {
        rc = fail("publishing the directory", e);
        goto out;
    }
    Keten__Anchor a = KETEN__ANCHOR__INIT;
    ProtobufCBinaryData admins[1] = { { KETEN_SIGN_PK_BYTES, admin_pk[0] } };
    a.network = (char *)"selfcheck";
    a.n_admins = 1;
    a.admins = admins;
    a.threshold = 1;
    if ((e = keten_pb_pack(&a.base, &anchor_bytes, &anchor_len)) != KETEN_OK
        || (e = keten_directory_anchor_parse(anchor_bytes, anchor_len, &anchor)) != KETEN_OK
        || (e = keten_directory_verify(anchor, NULL, signed_dir, signed_len, now, &dir))
            != KETEN_OK) {
        rc = fail("verifying the directory against the anchor", e);
        goto out;
    }
    printf("   Directory version %llu verifies against the anchor.\n",
        (unsigned long long)keten_directory_version(dir));

    printf("4. The municipality seals a signal to the police: signed, encrypted end to end.\n");
    keten_envelope_seal_params params = { .kind = KETEN__KIND__KIND_SIGNAL,
        .category = "woonfraude",
        .purpose = "riec-convenant/art-5",
        .created_at = now,
        .expires_at = now + 3600u * 1000u };
    const char *to[1] = { "politie-mn" };
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    if ((e = keten_signal_json_parse(example_json, strlen(example_json), &signal)) != KETEN_OK
        || (e = keten_signal_json_check(signal, dir)) != KETEN_OK
        || (e = keten_signal_json_pack(signal, &payload, &payload_len)) != KETEN_OK
        || (e = keten_envelope_seal(gemeente, dir, to, 1, &params, payload, payload_len, msg_id,
                &env, &env_len))
            != KETEN_OK) {
        rc = fail("sealing the signal", e);
        goto out;
    }
    char hex[KETEN_MSG_ID_HEX_BYTES];
    keten_hex(msg_id, sizeof msg_id, hex);
    printf("   msg_id %s, envelope %zu bytes (payload padded to a size bucket).\n", hex, env_len);

    printf("5. A broker could check it without any secret: ");
    if ((e = keten_envelope_verify(dir, env, env_len, &verified)) != KETEN_OK) {
        rc = fail("verifying the envelope", e);
        goto out;
    }
    keten_envelope_verified_destroy(&verified);
    printf("signature and header are valid.\n");

    printf("6. The municipality itself cannot open it (it is not a recipient): ");
    e = keten_envelope_open(gemeente, dir, env, env_len, keten_now_ms(), &verified, &opened);
    if (e != KETEN_ERR_NOT_RECIPIENT) {
        fprintf(stderr, "keten-selfcheck: a non-recipient was not refused (%s)\n",
            keten_err_str(e));
        goto out;
    }
    printf("refused, as it should be.\n");

    printf("7. The police node opens it and sees:\n");
    if ((e = keten_envelope_open(politie, dir, env, env_len, keten_now_ms(), &verified, &opened))
        != KETEN_OK) {
        rc = fail("opening the signal", e);
        goto out;
    }
    if ((e = keten_signal_json_to_text(opened, &json)) != KETEN_OK) {
        rc = fail("printing the signal", e);
        goto out;
    }
    printf("   from %s: %s\n", verified->header->sender, json);
    printf("keten self-check passed.\n");
    rc = 0;
out:
    free(json);
    keten_envelope_verified_destroy(&verified);
    keten_signal_json_free(&opened);
    keten_signal_json_free(&signal);
    free(env);
    free(payload);
    keten_pb_free((ProtobufCMessage **)&anchor);
    keten_pb_free((ProtobufCMessage **)&rq);
    free(anchor_bytes);
    free(signed_dir);
    free(dir_bytes);
    keten_directory_destroy(&dir);
    keten_dirbuild_destroy(&draft);
    free(req_g);
    free(req_p);
    keten_identity_destroy(&gemeente);
    keten_identity_destroy(&politie);
    sodium_free(admin_sk);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) {
        fprintf(stderr, "keten-selfcheck: could not remove %s\n", tmp);
    }
    return rc;
}
