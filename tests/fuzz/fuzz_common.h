/*
 * fuzz_common.h - what every fuzz harness in tests/fuzz shares: the
 * libFuzzer entry point, an invariant check that aborts (so that libFuzzer,
 * or the corpus driver, reports the input), and a fixed test network.
 *
 * The test network ("fuzznet") is built deterministically at the first call
 * of fuzz_net(): every key comes from a fixed seed (crypto_sign_seed_keypair,
 * crypto_box_seed_keypair), every time is a fixed constant, and the signed
 * directories are made with keten_dirbuild and keten_directory_sign. Ed25519
 * is deterministic, so the directory bytes are the same in every process:
 * make_corpus.c writes its seed inputs against exactly the network the
 * harnesses verify them against. These keys are test keys, public by
 * construction; they belong to no real network.
 *
 * The network:
 *   - 3 administrators, threshold 2 (the anchor);
 *   - version 1: nodes gemeente-diemen (municipality), politie-mn (police),
 *     belastingdienst (tax), woningcorp (housing) and broker (broker, with a
 *     log key); categories woonfraude, drugs, mensenhandel, adrescheck;
 *     purposes riec-convenant/art-5, handhaving; rule 1 allows * -> * for
 *     every category, rule 2 denies role:housing -> role:police for
 *     mensenhandel; signed by administrators 0 and 1;
 *   - version 2: politie-mn rotated to new keys (its old certificate
 *     superseded at FUZZ_T_ROTATE) and woningcorp revoked; signed by
 *     administrators 1 and 2.
 *
 * The harnesses of the daemons (fuzz_broker_frame, fuzz_node_frame,
 * fuzz_api) also share their set-up: a temporary directory holding the
 * network's files (fuzz_files_make()), its removal, the wall clock moved
 * back to the corpus's time (fuzz_clock_gettime()), and for the two node
 * harnesses the node itself (fuzz_node_*(), in fuzz_common_node.c, which
 * only a harness linked with the node's modules uses).
 *
 * Ownership: everything fuzz_net() returns lives until the process ends.
 * Thread safety: none (libFuzzer runs one input at a time per process).
 */
#ifndef KETEN_FUZZ_COMMON_H
#define KETEN_FUZZ_COMMON_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "directory.h"
#include "identity.h"
#include "keten.h"
#include "merkle.h"

/* The libFuzzer entry point every harness defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed times (ms since the epoch, UTC). */
#define FUZZ_T0 1767225600000ull /* 2026-01-01T00:00:00Z: version 1 issued, certificates start */
#define FUZZ_T_SEAL (FUZZ_T0 + KETEN_MS_PER_DAY) /* corpus envelopes are created here */
#define FUZZ_T_OPEN (FUZZ_T_SEAL + 10ull * 60ull * 1000ull) /* recipients open them here */
#define FUZZ_T_ROTATE (FUZZ_T0 + 2ull * KETEN_MS_PER_DAY) /* version 2 issued */
#define FUZZ_T_DIR (FUZZ_T0 + 3ull * KETEN_MS_PER_DAY) /* directories are verified here */
#define FUZZ_LIFETIME_MS KETEN_MS_PER_DAY /* corpus envelopes expire after a day */
#define FUZZ_CERT_VALID_MS (3650ull * KETEN_MS_PER_DAY)
#define FUZZ_DIR_VALID_MS (3650ull * KETEN_MS_PER_DAY)

#define FUZZ_NETWORK "fuzznet"
#define FUZZ_N_ADMINS 3
#define FUZZ_THRESHOLD 2
#define FUZZ_N_NODES 5
#define FUZZ_BROKER "broker"
/* The passphrase of the encrypted key files in corpus/keyfile. */
#define FUZZ_PASSPHRASE "fuzz-passphrase"

typedef struct fuzz_network {
    uint8_t admin_pk[FUZZ_N_ADMINS][KETEN_SIGN_PK_BYTES];
    uint8_t *admin_sk[FUZZ_N_ADMINS]; /* sodium_malloc, KETEN_SIGN_SK_BYTES each */
    Keten__Anchor *anchor;
    uint8_t *anchor_bytes;
    size_t anchor_len;
    /* Identities of version 1, in the order of fuzz_node_ids. */
    keten_identity *nodes[FUZZ_N_NODES];
    /* politie-mn's keys after the rotation of version 2. */
    keten_identity *politie2;
    uint8_t *dir1; /* SignedDirectory bytes of version 1 */
    size_t dir1_len;
    uint8_t *dir2; /* and of version 2 */
    size_t dir2_len;
    keten_directory *d1; /* verified against the anchor at FUZZ_T_DIR */
    keten_directory *d2; /* verified against d1 at FUZZ_T_DIR */
} fuzz_network;

extern const char *const fuzz_node_ids[FUZZ_N_NODES];

/* The test network, built at the first call; aborts if it cannot be built. */
const fuzz_network *fuzz_net(void);

/* Identity of version 1 by node id; NULL if none. */
const keten_identity *fuzz_node(const char *id);

/* Print "fuzz invariant: <what>" and the last keten error detail, then
 * abort(): libFuzzer saves the input as a crash. */
_Noreturn void fuzz_fail(const char *file, int line, const char *what);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
        }                                                                                          \
    } while (0)

/* A setup step that must work (building the network, packing a message we
 * made ourselves): abort with the error if not. */
#define FUZZ_MUST(call)                                                                            \
    do {                                                                                           \
        keten_err fuzz_must_e_ = (call);                                                           \
        if (fuzz_must_e_ != KETEN_OK) {                                                            \
            fuzz_fail(__FILE__, __LINE__, #call);                                                  \
        }                                                                                          \
    } while (0)

/* Does the protobuf message re-serialize to exactly buf/len? */
bool fuzz_packs_to(const ProtobufCMessage *msg, const uint8_t *buf, size_t len);

/* Re-sign a serialized Envelope with the key of the node named in its sender
 * hint (version 1 keys; with rotated, politie-mn's version 2 keys), so that
 * mutated headers get past the signature. Returns NULL when buf does not
 * parse as an Envelope or names no node of the test network; else a
 * malloc()ed serialized Envelope. */
uint8_t *fuzz_resign_envelope(const uint8_t *buf, size_t len, bool rotated, size_t *out_len);

/* The root an RFC 9162 audit path leads to from leaf_hash at index in a
 * tree of size leaves (the computation inside the verification, RFC 9162
 * 2.1.3.2), so that a harness can check a proof whatever root it was made
 * for. false when the path cannot belong to such a tree (index >= size, too
 * short, too long, a hash that is not 32 bytes). */
bool fuzz_root_from_path(const keten_hash leaf_hash, uint64_t index, uint64_t size,
    const ProtobufCBinaryData *path, size_t path_len, keten_hash root_out);

/* buf with bit `bit` (taken modulo 8 * len) flipped, malloc()ed; len > 0. */
uint8_t *fuzz_flip(const uint8_t *buf, size_t len, size_t bit);

/* ---- the daemons' harnesses: files, clock, node --------------------------- */

/* out = a/b; aborts if it does not fit in PATH_MAX. */
void fuzz_path_join(char out[static PATH_MAX], const char *a, const char *b);

/* Remove path and everything under it (the harness's own temporary files);
 * a path that is not there, or a file that goes while it runs (libzmq
 * removes a closed ipc socket's file itself), is no error. Aborts when
 * something cannot be removed. */
void fuzz_remove_tree(const char *path);

/* Make a new directory /dev/shm/keten-fuzz-NAME-XXXXXX (/dev/shm when it
 * is a writable directory, else $TMPDIR, else /tmp) in dir; aborts on
 * failure. The caller removes it with fuzz_remove_tree(). */
void fuzz_tmpdir_make(const char *name, char dir[static PATH_MAX]);

/* A harness's temporary directory and the test network's files in it. */
typedef struct fuzz_files {
    char dir[PATH_MAX]; /* /dev/shm/keten-fuzz-NAME-XXXXXX (else under $TMPDIR, /tmp) */
    char home[PATH_MAX]; /* DIR/home, mode 0700, empty */
    char anchor[PATH_MAX]; /* DIR/network.pub: the anchor */
    char directory[2][PATH_MAX]; /* DIR/directory-1, -2: versions 1 and 2 */
    char endpoint[PATH_MAX + 16]; /* ipc://DIR/broker.sock: where no broker listens */
} fuzz_files;

/* Make f's directory (fuzz_tmpdir_make()) and write the files into it;
 * aborts on failure. The caller removes it with fuzz_remove_tree(f->dir),
 * after closing what it opened there. */
void fuzz_files_make(const char *name, fuzz_files *f);

/* clock_gettime() with CLOCK_REALTIME (and _COARSE) moved back so that the
 * first call reads start_ms (ms since the epoch) and the clock runs on from
 * there; other clocks untouched. A harness whose daemon must see the
 * corpus's time defines clock_gettime() to return this (the shift is fixed
 * at the first call, one per process). Returns what the system call does. */
int fuzz_clock_gettime(clockid_t id, struct timespec *ts, uint64_t start_ms);

/* The node of fuzz_node_frame and fuzz_api, as tests/unit/fixture_node.c
 * sets one up (fuzz_common_node.c, linked with the node's modules). */
struct keten_node;

/* gemeente-diemen with home f->home, version 1 (f->directory[0]), the
 * anchor loaded, a ZeroMQ context and a link to f->endpoint (never
 * connected); no store, directory, witness or API open yet. f lives on. */
void fuzz_node_setup(struct keten_node *node, const fuzz_files *f);

/* The node afresh, as a daemon starts: its counters, requests, resend,
 * notice and submit state cleared; the store of node->opts.home opened,
 * the directory node->opts.directory loaded, a new witness. node->me and
 * node->opts.directory are the caller's choice. */
void fuzz_node_open(struct keten_node *node);

/* Close what fuzz_node_open() opened (witness, pending receipts, directory,
 * store); the API and the link stay. */
void fuzz_node_close(struct keten_node *node);

/* At exit: fuzz_node_close(), then the API, the link, the ZeroMQ context
 * and the anchor. */
void fuzz_node_teardown(struct keten_node *node);

/* A group-commit batch as the daemon's loop runs one (client/store.h):
 * begin: the store's batch begun, the link and the API held; end: the
 * deliveries' receipt batch signed, the store's batch committed, what the
 * link would send dropped (no broker listens), the API's answers released
 * as committed or not (a failed commit is no failure of the harness). */
void fuzz_node_batch_begin(struct keten_node *node);
void fuzz_node_batch_end(struct keten_node *node);

#endif
