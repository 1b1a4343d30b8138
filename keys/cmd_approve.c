/*
 * keten-keys approve: check a node's request (proof of possession, names,
 * no duplicate id, no reused key) and add its certificate to the next
 * directory version. --rotate replaces the keys of an existing node: the old
 * certificate is listed as superseded, not revoked.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admindir.h"
#include "cli.h"
#include "cmd.h"
#include "identity.h"
#include "pb.h"
#include "util.h"

#define CMD "approve"
#define CERT_VALID_DAYS_DEFAULT 365
#define CERT_VALID_DAYS_MAX 3650

static const char usage_text[]
    = "Usage: keten-keys approve --dir ADMIN REQUEST [--valid-days D] [--rotate] [--json]\n"
      "\n"
      "Approve a node's (or the broker's) enrollment request, made by\n"
      "keten-node keygen or keten-broker keygen, into the next directory version.\n"
      "Checks the request's proof of possession (it is signed with the node's new\n"
      "key), its id and role, that the id is not already enrolled, and that none\n"
      "of its keys is used by any certificate, current or past. Compare the\n"
      "printed request sha256 with the one the node's operator reads to you.\n"
      "The certificate takes effect when the next version is published and signed.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --valid-days D         certificate validity in days (default 365, at most 3650)\n"
      "  --rotate               the node already has a certificate: replace its keys\n"
      "                         (key rotation); the old certificate is listed as\n"
      "                         superseded, not revoked\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static const char *key_kind(int k)
{
    static const char *const names[] = { "signing", "encryption", "transport", "log" };
    return names[k];
}

static void request_keys(const Keten__NodeRequest *r, const ProtobufCBinaryData *out[4])
{
    out[0] = &r->sign_pk;
    out[1] = &r->enc_pk;
    out[2] = &r->transport_pk;
    out[3] = &r->log_pk;
}

static void cert_keys(const Keten__NodeCert *c, const ProtobufCBinaryData *out[4])
{
    out[0] = &c->sign_pk;
    out[1] = &c->enc_pk;
    out[2] = &c->transport_pk;
    out[3] = &c->log_pk;
}

/* Does any key of the request appear in cert (any kind of key)? */
static bool shares_key(const Keten__NodeRequest *req, const Keten__NodeCert *cert, int *which)
{
    const ProtobufCBinaryData *rk[4], *ck[4];
    request_keys(req, rk);
    cert_keys(cert, ck);
    for (int i = 0; i < 4; i++) {
        if (rk[i]->len == 0) {
            continue;
        }
        for (int j = 0; j < 4; j++) {
            if (ck[j]->len == rk[i]->len
                && sodium_memcmp(ck[j]->data, rk[i]->data, rk[i]->len) == 0) {
                *which = i;
                return true;
            }
        }
    }
    return false;
}

static keten_err check_request(const Keten__Directory *doc, const Keten__NodeRequest *req,
    bool rotate, const Keten__NodeCert **current)
{
    *current = NULL;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        if (strcmp(doc->nodes[i]->id, req->id) == 0) {
            *current = doc->nodes[i];
        }
    }
    if (*current != NULL && !rotate) {
        return keten_err_set(KETEN_ERR_DUPLICATE_ID,
            "node %s already has a certificate (serial %llu, role %s); to replace its keys use "
            "--rotate, to enrol another node choose another id",
            req->id, (unsigned long long)(*current)->serial, (*current)->role);
    }
    if (*current == NULL && rotate) {
        return keten_err_set(KETEN_ERR_NOT_FOUND,
            "--rotate given, but %s has no current certificate to replace; approve it without "
            "--rotate",
            req->id);
    }
    if (*current != NULL && strcmp((*current)->role, req->role) != 0) {
        return keten_err_set(KETEN_ERR_MISMATCH,
            "a rotation keeps the role: %s is %s, the request says %s; to change the role, "
            "revoke %s and approve the request without --rotate",
            req->id, (*current)->role, req->role, req->id);
    }
    int which = 0;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        if (shares_key(req, doc->nodes[i], &which)) {
            return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                "the request's %s key is already used by the certificate of %s (serial %llu); "
                "a key may appear in one certificate only: have the node run keygen again",
                key_kind(which), doc->nodes[i]->id, (unsigned long long)doc->nodes[i]->serial);
        }
    }
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__NodeCert *cert = doc->revocations[i]->cert;
        if (cert != NULL && shares_key(req, cert, &which)) {
            return keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                "the request's %s key was used by the earlier certificate of %s (serial %llu, "
                "%s); keys are never reused: have the node run keygen again",
                key_kind(which), cert->id, (unsigned long long)cert->serial,
                doc->revocations[i]->superseded ? "superseded" : "revoked");
        }
    }
    return KETEN_OK;
}

int cmd_approve(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "valid-days", required_argument, NULL, 'v' },
        { "rotate", no_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL, *days_arg = NULL;
    bool rotate = false, json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'v':
            days_arg = optarg;
            break;
        case 'r':
            rotate = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (dir == NULL) {
        return keten_cli_usage(CMD, "--dir ADMIN is required");
    }
    if (optind >= argc) {
        return keten_cli_usage(CMD, "give the REQUEST file to approve");
    }
    if (argc - optind > 1) {
        return keten_cli_usage(
            CMD, "unexpected argument '%s'; approve one REQUEST at a time", argv[optind + 1]);
    }
    const char *request_path = argv[optind];
    uint64_t days = CERT_VALID_DAYS_DEFAULT;
    if (days_arg != NULL && !keten_cli_parse_uint(days_arg, 1, CERT_VALID_DAYS_MAX, &days)) {
        return keten_cli_usage(
            CMD, "--valid-days '%s' must be a number from 1 to %d", days_arg, CERT_VALID_DAYS_MAX);
    }

    admindir *ad = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__NodeRequest *req = NULL;
    const Keten__NodeCert *current = NULL;
    uint64_t old_serial = 0, serial = 0;
    uint64_t now = keten_now_ms();
    keten_err e = admindir_open(dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = keten_file_read(request_path, KETEN_REQUEST_MAX, &buf, &len)) != KETEN_OK) {
        goto out;
    }
    e = keten_identity_request_verify(buf, len, &req);
    if (e == KETEN_ERR_BAD_SIGNATURE) {
        e = keten_err_set(e,
            "the proof of possession in %s does not verify: the request was altered after "
            "keygen made it; refuse it and ask the node for a fresh request",
            request_path);
    } else if (e == KETEN_ERR_MALFORMED) {
        char why[256];
        snprintf(why, sizeof why, "%s", keten_err_detail());
        e = keten_err_set(e,
            "%s is not an enrollment request (%s): give the identity.request (for a key "
            "rotation identity.next.request) that keten-node keygen or keten-broker keygen "
            "wrote",
            request_path, why);
    }
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
    if (req->network[0] != '\0' && strcmp(req->network, doc->network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "%s asks to join network '%s', but %s is network '%s'", request_path, req->network, dir,
            doc->network);
        goto out;
    }
    if ((e = check_request(doc, req, rotate, &current)) != KETEN_OK) {
        goto out;
    }
    old_serial = current != NULL ? current->serial : 0;
    e = keten_dirbuild_approve(ad->draft, req, now, days * KETEN_MS_PER_DAY, rotate, &serial);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }

    char hash[KETEN_CLI_HASH_HEX_BYTES], until[32];
    keten_cli_sha256_hex(buf, len, hash);
    keten_time_iso(now + days * KETEN_MS_PER_DAY, until, sizeof until);
    uint64_t version = admindir_next_version(ad);
    if (json) {
        json_t *obj = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:b}", "id", req->id, "role",
            req->role, "org", req->org, "serial", (json_int_t)serial, "not_after", until,
            "request_sha256", hash, "version", (json_int_t)version, "rotated", rotate);
        if (obj != NULL && rotate) {
            json_object_set_new(obj, "superseded_serial", json_integer((json_int_t)old_serial));
        }
        e = keten_cli_json_print(obj);
    } else {
        printf("approved %s (role %s, organisation \"%s\"): serial %llu, valid until %s\n", req->id,
            req->role, req->org, (unsigned long long)serial, until);
        if (rotate) {
            printf("replaces serial %llu, which is listed as superseded (not revoked)\n",
                (unsigned long long)old_serial);
        }
        printf("request sha256 %s\n", hash);
        printf("takes effect when version %llu is published and signed\n",
            (unsigned long long)version);
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&req);
    free(buf);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
