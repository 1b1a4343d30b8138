/*
 * fixture.c - a real test network for unit tests (see fixture.h): real
 * administrator keys, real node identities enrolled through signed requests,
 * and directories built with dirbuild, signed and verified with libketen.
 *
 * Besides what fixture.h promises, the fixture writes the anchor to
 * "network.pub" and the newest published SignedDirectory to "directory" in
 * its temporary directory, for tests that load files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "pb.h"
#include "util.h"

#define FIXTURE_NETWORK "testnet"
#define FIXTURE_CERT_VALID_MS (365ull * KETEN_MS_PER_DAY)
#define FIXTURE_DIR_VALID_MS (KETEN_DIRECTORY_VALID_DAYS_DEFAULT * KETEN_MS_PER_DAY)
#define LABEL_DIRECTORY_LEN (sizeof KETEN_LABEL_DIRECTORY - 1)

static const char *const fixture_categories[]
    = { "woonfraude", "drugs", "mensenhandel", "adrescheck" };
static const char *const fixture_purposes[] = { "riec-convenant/art-5", "handhaving" };

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        keten_err check_e_ = (call);                                                               \
        if (check_e_ != KETEN_OK) {                                                                \
            fail_msg("fixture: %s: %s: %s", (what), keten_err_str(check_e_), keten_err_detail());  \
        }                                                                                          \
    } while (0)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fail_msg("fixture: out of memory");
    }
    return p;
}

void fixture_path(const fixture *self, const char *name, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", self->tmpdir, name);
    if (n < 0 || n >= PATH_MAX) {
        fail_msg("fixture: path %s/%s is too long", self->tmpdir, name);
    }
}

static void write_file(const fixture *self, const char *name, const uint8_t *data, size_t len)
{
    char path[PATH_MAX];
    fixture_path(self, name, path);
    CHECK(keten_file_write(path, data, len, 0644, false), path);
}

/* "id:role" into id and role. */
static void parse_spec(const char *spec, char id[KETEN_NAME_MAX + 1], char role[KETEN_NAME_MAX + 1])
{
    const char *colon = strchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) > KETEN_NAME_MAX
        || strlen(colon + 1) > KETEN_NAME_MAX) {
        fail_msg("fixture: node spec '%s' is not id:role", spec);
    }
    memcpy(id, spec, (size_t)(colon - spec));
    id[colon - spec] = '\0';
    strcpy(role, colon + 1);
}

static void make_anchor(fixture *self)
{
    ProtobufCBinaryData admins[FIXTURE_MAX_ADMINS];
    for (size_t i = 0; i < self->n_admins; i++) {
        admins[i].data = self->admin_pk[i];
        admins[i].len = KETEN_SIGN_PK_BYTES;
    }
    Keten__Anchor a = KETEN__ANCHOR__INIT;
    a.network = (char *)FIXTURE_NETWORK;
    a.admins = admins;
    a.n_admins = self->n_admins;
    a.threshold = self->threshold;
    CHECK(keten_pb_pack(&a.base, &self->anchor_bytes, &self->anchor_len), "packing the anchor");
    CHECK(keten_directory_anchor_parse(self->anchor_bytes, self->anchor_len, &self->anchor),
        "parsing the anchor");
    write_file(self, "network.pub", self->anchor_bytes, self->anchor_len);
}

/* Approve node's request into the draft: a new certificate, or with
 * rotation the next keys of an enrolled node (keten-keys approve --rotate). */
static void enroll(fixture *self, const keten_identity *node, uint64_t now, bool rotation)
{
    uint8_t *req = NULL;
    size_t req_len = 0;
    Keten__NodeRequest *parsed = NULL;
    CHECK(keten_identity_request(node, FIXTURE_NETWORK, now, &req, &req_len), node->id);
    CHECK(keten_identity_request_verify(req, req_len, &parsed), node->id);
    free(req);
    uint64_t serial = 0;
    keten_err e = keten_dirbuild_approve(
        self->draft, parsed, now, FIXTURE_CERT_VALID_MS, rotation, &serial);
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
    CHECK(e, node->id);
}

static void make_draft(fixture *self, uint64_t now)
{
    CHECK(keten_dirbuild_new(FIXTURE_NETWORK, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])self->admin_pk,
              self->n_admins, self->threshold, &self->draft),
        "starting the draft");
    for (size_t i = 0; i < sizeof fixture_categories / sizeof *fixture_categories; i++) {
        CHECK(keten_dirbuild_register(self->draft, fixture_categories[i], NULL),
            fixture_categories[i]);
    }
    for (size_t i = 0; i < sizeof fixture_purposes / sizeof *fixture_purposes; i++) {
        CHECK(keten_dirbuild_register(self->draft, NULL, fixture_purposes[i]), fixture_purposes[i]);
    }
    uint32_t rule = 0;
    CHECK(keten_dirbuild_add_rule(
              self->draft, KETEN__EFFECT__EFFECT_ALLOW, "*", "*", "*", NULL, NULL, &rule),
        "adding the allow-all rule");
    if (rule != 1) {
        fail_msg("fixture: the first rule got id %u", rule);
    }
    for (size_t i = 0; i < self->n_nodes; i++) {
        enroll(self, self->nodes[i], now, false);
    }
}

fixture *fixture_new(size_t n_admins, uint32_t threshold, const char *const *specs)
{
    if (sodium_init() < 0) {
        fail_msg("fixture: libsodium could not be initialised");
    }
    if (n_admins < 1 || n_admins > FIXTURE_MAX_ADMINS) {
        fail_msg("fixture: %zu administrators; 1 to %d", n_admins, FIXTURE_MAX_ADMINS);
    }
    fixture *self = xcalloc(1, sizeof *self);
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(self->tmpdir, sizeof self->tmpdir, "%s/keten-fixture-XXXXXX",
        tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof self->tmpdir || mkdtemp(self->tmpdir) == NULL) {
        fail_msg("fixture: cannot make a temporary directory");
    }
    self->n_admins = n_admins;
    self->threshold = threshold;
    for (size_t i = 0; i < n_admins; i++) {
        self->admin_sk[i] = sodium_malloc(KETEN_SIGN_SK_BYTES);
        if (self->admin_sk[i] == NULL) {
            fail_msg("fixture: out of secure memory");
        }
        if (crypto_sign_keypair(self->admin_pk[i], self->admin_sk[i]) != 0) {
            fail_msg("fixture: crypto_sign_keypair failed");
        }
    }
    make_anchor(self);

    uint64_t now = keten_now_ms();
    for (size_t i = 0; specs != NULL && specs[i] != NULL; i++) {
        if (self->n_nodes >= FIXTURE_MAX_NODES) {
            fail_msg("fixture: more than %d nodes", FIXTURE_MAX_NODES);
        }
        char id[KETEN_NAME_MAX + 1];
        char role[KETEN_NAME_MAX + 1];
        char org[KETEN_ORG_MAX + 1];
        parse_spec(specs[i], id, role);
        snprintf(org, sizeof org, "Organisation %s", id);
        CHECK(keten_identity_generate(
                  id, role, org, strcmp(role, "broker") == 0, &self->nodes[self->n_nodes]),
            specs[i]);
        self->n_nodes++;
    }
    make_draft(self, now);

    size_t len = 0;
    uint8_t *signed_dir = fixture_publish(self, &len);
    free(signed_dir);
    return self;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fixture_destroy(fixture **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    fixture *self = *self_p;
    for (size_t i = 0; i < self->n_admins; i++) {
        sodium_free(self->admin_sk[i]); /* wipes */
        self->admin_sk[i] = NULL;
    }
    for (size_t i = 0; i < self->n_nodes; i++) {
        keten_identity_destroy(&self->nodes[i]);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&self->anchor);
    free(self->anchor_bytes);
    keten_dirbuild_destroy(&self->draft);
    keten_directory_destroy(&self->directory);
    if (self->tmpdir[0] != '\0') {
        (void)nftw(self->tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    free(self);
    *self_p = NULL;
}

keten_identity *fixture_node(const fixture *self, const char *id)
{
    for (size_t i = 0; i < self->n_nodes; i++) {
        if (strcmp(self->nodes[i]->id, id) == 0) {
            return self->nodes[i];
        }
    }
    return NULL;
}

/* A SignedDirectory over dir by the given admins. The first signature of each
 * admin goes through keten_directory_sign(); a repeated admin is appended by
 * hand (keten_directory_sign rightly refuses to sign twice), with the same
 * bytes Ed25519 produces again. */
static uint8_t *sign_dir(const fixture *self, const uint8_t *dir, size_t dir_len,
    const size_t *signers, size_t n_signers, size_t *len_out)
{
    uint8_t *cur = NULL;
    size_t cur_len = 0;
    size_t repeats = 0;
    size_t *repeat_of = xcalloc(n_signers + 1, sizeof *repeat_of);

    for (size_t i = 0; i < n_signers; i++) {
        if (signers[i] >= self->n_admins) {
            fail_msg("fixture: no administrator %zu", signers[i]);
        }
        bool seen = false;
        for (size_t j = 0; j < i; j++) {
            seen = seen || signers[j] == signers[i];
        }
        if (seen) {
            repeat_of[repeats++] = signers[i];
            continue;
        }
        uint8_t *next = NULL;
        size_t next_len = 0;
        CHECK(keten_directory_sign(
                  dir, dir_len, cur, cur_len, self->admin_sk[signers[i]], &next, &next_len),
            "signing the directory");
        free(cur);
        cur = next;
        cur_len = next_len;
    }
    if (cur == NULL || repeats > 0) {
        /* Start or extend the SignedDirectory by hand. */
        Keten__SignedDirectory *sd = NULL;
        if (cur != NULL) {
            CHECK(KETEN_PB_UNPACK_CANONICAL(keten__signed_directory, cur, cur_len,
                      KETEN_DIRECTORY_MAX, "signed directory", &sd),
                "re-reading the signed directory");
        }
        size_t n_old = sd != NULL ? sd->n_signatures : 0;
        Keten__DirectorySignature **sigs = xcalloc(n_old + repeats + 1, sizeof *sigs);
        Keten__DirectorySignature *extra = xcalloc(repeats + 1, sizeof *extra);
        uint8_t(*sig_bytes)[KETEN_SIG_BYTES] = xcalloc(repeats + 1, KETEN_SIG_BYTES);
        uint8_t *msg = xcalloc(LABEL_DIRECTORY_LEN + dir_len, 1);
        memcpy(msg, KETEN_LABEL_DIRECTORY, LABEL_DIRECTORY_LEN);
        memcpy(msg + LABEL_DIRECTORY_LEN, dir, dir_len);
        for (size_t i = 0; i < n_old; i++) {
            sigs[i] = sd->signatures[i];
        }
        for (size_t r = 0; r < repeats; r++) {
            size_t a = repeat_of[r];
            if (crypto_sign_detached(
                    sig_bytes[r], NULL, msg, LABEL_DIRECTORY_LEN + dir_len, self->admin_sk[a])
                != 0) {
                fail_msg("fixture: signing failed");
            }
            keten__directory_signature__init(&extra[r]);
            extra[r].admin_pk.data = (uint8_t *)self->admin_pk[a];
            extra[r].admin_pk.len = KETEN_SIGN_PK_BYTES;
            extra[r].signature.data = sig_bytes[r];
            extra[r].signature.len = KETEN_SIG_BYTES;
            sigs[n_old + r] = &extra[r];
        }
        Keten__SignedDirectory out = KETEN__SIGNED_DIRECTORY__INIT;
        out.directory.data = (uint8_t *)dir;
        out.directory.len = dir_len;
        out.signatures = sigs;
        out.n_signatures = n_old + repeats;
        free(cur);
        cur = NULL;
        CHECK(keten_pb_pack(&out.base, &cur, &cur_len), "packing the signed directory");
        free(msg);
        free(sig_bytes);
        free(extra);
        free(sigs);
        keten_pb_free((ProtobufCMessage **)(void *)&sd);
    }
    free(repeat_of);
    *len_out = cur_len;
    return cur;
}

uint8_t *fixture_sign_draft(fixture *self, uint64_t now_ms, uint64_t valid_ms,
    const size_t *signers, size_t n_signers, size_t *len_out)
{
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    CHECK(keten_dirbuild_finish(self->draft, now_ms, valid_ms, &dir, &dir_len),
        "finishing the draft");
    uint8_t *out = sign_dir(self, dir, dir_len, signers, n_signers, len_out);
    free(dir);
    return out;
}

void fixture_approve_rotation(fixture *self, const keten_identity *next)
{
    enroll(self, next, keten_now_ms(), true);
}

uint8_t *fixture_publish(fixture *self, size_t *len_out)
{
    return fixture_publish_valid(self, FIXTURE_DIR_VALID_MS, len_out);
}

uint8_t *fixture_publish_valid(fixture *self, uint64_t valid_ms, size_t *len_out)
{
    uint64_t now = keten_now_ms();
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    size_t signers[FIXTURE_MAX_ADMINS];
    for (size_t i = 0; i < self->threshold && i < FIXTURE_MAX_ADMINS; i++) {
        signers[i] = i;
    }
    CHECK(keten_dirbuild_finish(self->draft, now, valid_ms, &dir, &dir_len), "finishing the draft");
    size_t len = 0;
    uint8_t *signed_dir = sign_dir(self, dir, dir_len, signers, self->threshold, &len);
    keten_directory *next = NULL;
    CHECK(keten_directory_verify(self->anchor, self->directory, signed_dir, len, now, &next),
        "verifying the published directory");
    CHECK(keten_dirbuild_advance(self->draft, dir, dir_len), "advancing the draft");
    free(dir);
    keten_directory_destroy(&self->directory);
    self->directory = next;
    write_file(self, "directory", signed_dir, len);
    *len_out = len;
    return signed_dir;
}
