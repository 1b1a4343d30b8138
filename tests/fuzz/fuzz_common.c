/*
 * fuzz_common.c - the fixed test network and helpers shared by the fuzz
 * harnesses (see fuzz_common.h).
 */
#include "fuzz_common.h"

#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dirbuild.h"
#include "err.h"
#include "pb.h"
#include "util.h"

#define SEED_LABEL "keten-fuzz-seed/v1/"
#define LABEL_ENVELOPE_LEN (sizeof KETEN_LABEL_ENVELOPE - 1)

const char *const fuzz_node_ids[FUZZ_N_NODES]
    = { "gemeente-diemen", "politie-mn", "belastingdienst", "woningcorp", FUZZ_BROKER };
static const char *const node_roles[FUZZ_N_NODES]
    = { "municipality", "police", "tax", "housing", "broker" };
static const char *const node_orgs[FUZZ_N_NODES] = { "Gemeente Diemen", "Politie Midden-Nederland",
    "Belastingdienst", "Woningcorporatie Diemen", "Keten broker" };
static const char *const categories[] = { "woonfraude", "drugs", "mensenhandel", "adrescheck" };
static const char *const purposes[] = { "riec-convenant/art-5", "handhaving" };

static fuzz_network net;
static bool built;

_Noreturn void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n  last keten error detail: %s\n", file, line,
        what, keten_err_detail());
    fflush(stderr);
    abort();
}

/* A fixed 32-byte seed for (name, use). */
static void seed_of(const char *name, const char *use, uint8_t seed[32])
{
    crypto_generichash_state st;
    if (crypto_generichash_init(&st, NULL, 0, 32) != 0
        || crypto_generichash_update(&st, (const uint8_t *)SEED_LABEL, sizeof SEED_LABEL - 1) != 0
        || crypto_generichash_update(&st, (const uint8_t *)name, strlen(name) + 1) != 0
        || crypto_generichash_update(&st, (const uint8_t *)use, strlen(use) + 1) != 0
        || crypto_generichash_final(&st, seed, 32) != 0) {
        fuzz_fail(__FILE__, __LINE__, "deriving a seed");
    }
}

/* An identity whose keys all come from seeds named after seed_name. */
static keten_identity *seeded_identity(
    const char *id, const char *role, const char *org, const char *seed_name)
{
    keten_identity *self = sodium_malloc(sizeof *self);
    FUZZ_CHECK(self != NULL);
    memset(self, 0, sizeof *self);
    FUZZ_CHECK(strlen(id) <= KETEN_NAME_MAX && strlen(role) <= KETEN_NAME_MAX
        && strlen(org) <= KETEN_ORG_MAX);
    memcpy(self->id, id, strlen(id) + 1);
    memcpy(self->role, role, strlen(role) + 1);
    memcpy(self->org, org, strlen(org) + 1);
    uint8_t seed[32];
    seed_of(seed_name, "sign", seed);
    FUZZ_CHECK(crypto_sign_seed_keypair(self->sign_pk, self->sign_sk, seed) == 0);
    seed_of(seed_name, "enc", seed);
    FUZZ_CHECK(crypto_box_seed_keypair(self->enc_pk, self->enc_sk, seed) == 0);
    seed_of(seed_name, "transport", seed);
    FUZZ_CHECK(crypto_box_seed_keypair(self->transport_pk, self->transport_sk, seed) == 0);
    if (strcmp(role, "broker") == 0) {
        seed_of(seed_name, "log", seed);
        FUZZ_CHECK(crypto_sign_seed_keypair(self->log_pk, self->log_sk, seed) == 0);
        self->has_log_key = true;
    }
    sodium_memzero(seed, sizeof seed);
    return self;
}

static void make_anchor(void)
{
    ProtobufCBinaryData admins[FUZZ_N_ADMINS];
    for (size_t i = 0; i < FUZZ_N_ADMINS; i++) {
        admins[i].data = net.admin_pk[i];
        admins[i].len = KETEN_SIGN_PK_BYTES;
    }
    Keten__Anchor a = KETEN__ANCHOR__INIT;
    a.network = (char *)FUZZ_NETWORK;
    a.admins = admins;
    a.n_admins = FUZZ_N_ADMINS;
    a.threshold = FUZZ_THRESHOLD;
    FUZZ_MUST(keten_pb_pack(&a.base, &net.anchor_bytes, &net.anchor_len));
    FUZZ_MUST(keten_directory_anchor_parse(net.anchor_bytes, net.anchor_len, &net.anchor));
}

static void enroll(keten_dirbuild *draft, const keten_identity *node, uint64_t now, bool rotate)
{
    uint8_t *req = NULL;
    size_t req_len = 0;
    Keten__NodeRequest *parsed = NULL;
    FUZZ_MUST(keten_identity_request(node, FUZZ_NETWORK, now, &req, &req_len));
    FUZZ_MUST(keten_identity_request_verify(req, req_len, &parsed));
    free(req);
    uint64_t serial = 0;
    FUZZ_MUST(keten_dirbuild_approve(draft, parsed, now, FUZZ_CERT_VALID_MS, rotate, &serial));
    keten_pb_free((ProtobufCMessage **)(void *)&parsed);
}

/* Finish the draft at now and sign it with administrators a and b. */
static void publish(
    keten_dirbuild *draft, uint64_t now, size_t a, size_t b, uint8_t **out, size_t *out_len)
{
    uint8_t *dir = NULL;
    size_t dir_len = 0;
    uint8_t *one = NULL;
    size_t one_len = 0;
    FUZZ_MUST(keten_dirbuild_finish(draft, now, FUZZ_DIR_VALID_MS, &dir, &dir_len));
    FUZZ_MUST(keten_directory_sign(dir, dir_len, NULL, 0, net.admin_sk[a], &one, &one_len));
    FUZZ_MUST(keten_directory_sign(dir, dir_len, one, one_len, net.admin_sk[b], out, out_len));
    FUZZ_MUST(keten_dirbuild_advance(draft, dir, dir_len));
    free(one);
    free(dir);
}

static void build(void)
{
    FUZZ_CHECK(sodium_init() >= 0);
    for (size_t i = 0; i < FUZZ_N_ADMINS; i++) {
        char name[32];
        snprintf(name, sizeof name, "admin-%zu", i);
        uint8_t seed[32];
        seed_of(name, "sign", seed);
        net.admin_sk[i] = sodium_malloc(KETEN_SIGN_SK_BYTES);
        FUZZ_CHECK(net.admin_sk[i] != NULL);
        FUZZ_CHECK(crypto_sign_seed_keypair(net.admin_pk[i], net.admin_sk[i], seed) == 0);
        sodium_memzero(seed, sizeof seed);
    }
    make_anchor();
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        net.nodes[i]
            = seeded_identity(fuzz_node_ids[i], node_roles[i], node_orgs[i], fuzz_node_ids[i]);
    }
    net.politie2 = seeded_identity("politie-mn", "police", node_orgs[1], "politie-mn/rotated");

    keten_dirbuild *draft = NULL;
    FUZZ_MUST(keten_dirbuild_new(FUZZ_NETWORK, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])net.admin_pk,
        FUZZ_N_ADMINS, FUZZ_THRESHOLD, &draft));
    for (size_t i = 0; i < sizeof categories / sizeof *categories; i++) {
        FUZZ_MUST(keten_dirbuild_register(draft, categories[i], NULL));
    }
    for (size_t i = 0; i < sizeof purposes / sizeof *purposes; i++) {
        FUZZ_MUST(keten_dirbuild_register(draft, NULL, purposes[i]));
    }
    uint32_t rule = 0;
    FUZZ_MUST(keten_dirbuild_add_rule(
        draft, KETEN__EFFECT__EFFECT_ALLOW, "*", "*", "*", NULL, NULL, &rule));
    FUZZ_CHECK(rule == 1);
    FUZZ_MUST(keten_dirbuild_add_rule(draft, KETEN__EFFECT__EFFECT_DENY, "role:housing",
        "role:police", "mensenhandel", NULL, NULL, &rule));
    FUZZ_CHECK(rule == 2);
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        enroll(draft, net.nodes[i], FUZZ_T0, false);
    }
    publish(draft, FUZZ_T0, 0, 1, &net.dir1, &net.dir1_len);
    FUZZ_MUST(
        keten_directory_verify(net.anchor, NULL, net.dir1, net.dir1_len, FUZZ_T_DIR, &net.d1));

    enroll(draft, net.politie2, FUZZ_T_ROTATE, true);
    FUZZ_MUST(keten_dirbuild_revoke(draft, "woningcorp", "left the covenant", FUZZ_T_ROTATE));
    publish(draft, FUZZ_T_ROTATE, 1, 2, &net.dir2, &net.dir2_len);
    FUZZ_MUST(keten_directory_verify(NULL, net.d1, net.dir2, net.dir2_len, FUZZ_T_DIR, &net.d2));
    keten_dirbuild_destroy(&draft);
    keten_err_clear();
}

const fuzz_network *fuzz_net(void)
{
    if (!built) {
        build();
        built = true;
    }
    return &net;
}

const keten_identity *fuzz_node(const char *id)
{
    const fuzz_network *n = fuzz_net();
    for (size_t i = 0; i < FUZZ_N_NODES; i++) {
        if (strcmp(fuzz_node_ids[i], id) == 0) {
            return n->nodes[i];
        }
    }
    return NULL;
}

bool fuzz_packs_to(const ProtobufCMessage *msg, const uint8_t *buf, size_t len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n != len) {
        return false;
    }
    uint8_t *again = malloc(n ? n : 1);
    FUZZ_CHECK(again != NULL);
    size_t w = protobuf_c_message_pack(msg, again);
    bool same = w == n && (n == 0 || memcmp(again, buf, n) == 0);
    free(again);
    return same;
}

uint8_t *fuzz_resign_envelope(const uint8_t *buf, size_t len, bool rotated, size_t *out_len)
{
    const fuzz_network *n = fuzz_net();
    Keten__Envelope *env = NULL;
    if (KETEN_PB_UNPACK(keten__envelope, buf, len, KETEN_ENVELOPE_MAX, "envelope", &env)
        != KETEN_OK) {
        keten_err_clear();
        return NULL;
    }
    const keten_identity *signer = fuzz_node(env->sender);
    if (rotated && signer == n->nodes[1]) {
        signer = n->politie2;
    }
    uint8_t *out = NULL;
    if (signer != NULL) {
        uint8_t ct_hash[KETEN_HASH_BYTES];
        uint8_t sig[KETEN_SIG_BYTES];
        crypto_hash_sha256(ct_hash, env->ciphertext.data, env->ciphertext.len);
        size_t msg_len = LABEL_ENVELOPE_LEN + env->header.len + KETEN_HASH_BYTES;
        uint8_t *msg = malloc(msg_len);
        FUZZ_CHECK(msg != NULL);
        memcpy(msg, KETEN_LABEL_ENVELOPE, LABEL_ENVELOPE_LEN);
        if (env->header.len > 0) {
            memcpy(msg + LABEL_ENVELOPE_LEN, env->header.data, env->header.len);
        }
        memcpy(msg + LABEL_ENVELOPE_LEN + env->header.len, ct_hash, KETEN_HASH_BYTES);
        FUZZ_CHECK(crypto_sign_detached(sig, NULL, msg, msg_len, signer->sign_sk) == 0);
        free(msg);
        ProtobufCBinaryData old = env->signature;
        env->signature.data = sig;
        env->signature.len = sizeof sig;
        FUZZ_MUST(keten_pb_pack(&env->base, &out, out_len));
        /* sig lives on the stack: put the unpacked field back before the free. */
        env->signature = old;
    }
    keten_pb_free((ProtobufCMessage **)(void *)&env);
    return out;
}

bool fuzz_root_from_path(const keten_hash leaf_hash, uint64_t index, uint64_t size,
    const ProtobufCBinaryData *path, size_t path_len, keten_hash root_out)
{
    if (index >= size || path_len > KETEN_MERKLE_MAX_PROOF) {
        return false;
    }
    uint64_t fn = index;
    uint64_t sn = size - 1;
    keten_hash r;
    memcpy(r, leaf_hash, sizeof r);
    for (size_t i = 0; i < path_len; i++) {
        if (sn == 0 || path[i].len != KETEN_HASH_BYTES) {
            return false;
        }
        keten_hash next;
        if ((fn & 1) == 1 || fn == sn) {
            keten_merkle_node_hash(path[i].data, r, next);
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            keten_merkle_node_hash(r, path[i].data, next);
        }
        memcpy(r, next, sizeof r);
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0) {
        return false;
    }
    memcpy(root_out, r, sizeof r);
    return true;
}

uint8_t *fuzz_flip(const uint8_t *buf, size_t len, size_t bit)
{
    FUZZ_CHECK(len > 0);
    uint8_t *out = malloc(len);
    FUZZ_CHECK(out != NULL);
    memcpy(out, buf, len);
    bit %= 8 * len;
    out[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    return out;
}

/* ---- the daemons' harnesses: files, clock -------------------------------- */

void fuzz_path_join(char out[static PATH_MAX], const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", a, b);
    FUZZ_CHECK(n > 0 && n < PATH_MAX);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    /* gone already: libzmq removes a closed ipc socket's file itself */
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void fuzz_remove_tree(const char *path)
{
    if (access(path, F_OK) == 0) {
        FUZZ_CHECK(nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    }
}

void fuzz_tmpdir_make(const char *name, char dir[static PATH_MAX])
{
    struct stat st;
    const char *tmp = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
        tmp = "/dev/shm";
    } else if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    int n = snprintf(dir, PATH_MAX, "%s/keten-fuzz-%s-XXXXXX", tmp, name);
    FUZZ_CHECK(n > 0 && n < PATH_MAX && mkdtemp(dir) != NULL);
}

void fuzz_files_make(const char *name, fuzz_files *f)
{
    const fuzz_network *n = fuzz_net();
    memset(f, 0, sizeof *f);
    fuzz_tmpdir_make(name, f->dir);
    fuzz_path_join(f->home, f->dir, "home");
    fuzz_path_join(f->anchor, f->dir, "network.pub");
    fuzz_path_join(f->directory[0], f->dir, "directory-1");
    fuzz_path_join(f->directory[1], f->dir, "directory-2");
    int len = snprintf(f->endpoint, sizeof f->endpoint, "ipc://%s/broker.sock", f->dir);
    FUZZ_CHECK(len > 0 && (size_t)len < sizeof f->endpoint);
    FUZZ_CHECK(mkdir(f->home, 0700) == 0);
    FUZZ_MUST(keten_file_write(f->anchor, n->anchor_bytes, n->anchor_len, 0644, false));
    FUZZ_MUST(keten_file_write(f->directory[0], n->dir1, n->dir1_len, 0644, false));
    FUZZ_MUST(keten_file_write(f->directory[1], n->dir2, n->dir2_len, 0644, false));
}

int fuzz_clock_gettime(clockid_t id, struct timespec *ts, uint64_t start_ms)
{
    static int64_t shift_ms;
    static bool shift_set;
    long rc = syscall(SYS_clock_gettime, id, ts);
    if (rc != 0 || (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE)) {
        return (int)rc;
    }
    int64_t ms = (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
    if (!shift_set) {
        shift_ms = (int64_t)start_ms - ms;
        shift_set = true;
    }
    int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + shift_ms * 1000000;
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
    return 0;
}
