/*
 * fixture.h - a real test network for unit tests: administrator keys, node
 * identities and signed directories, built with libketen's own functions
 * (nothing mocked), in a fresh temporary directory.
 *
 * Node specs are "id:role" strings; "broker" role gets a log key.
 * The default draft registers categories woonfraude, drugs, mensenhandel,
 * adrescheck and purposes riec-convenant/art-5, handhaving, and has one rule
 * (id 1): allow * -> * for category "*", all kinds and purposes.
 * The fixture's directory (version 1) is signed by admins 0..threshold-1 and
 * verified against the anchor at the current time.
 */
#ifndef KETEN_TEST_FIXTURE_H
#define KETEN_TEST_FIXTURE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "dirbuild.h"
#include "directory.h"
#include "identity.h"
#include "keten.h"

#define FIXTURE_MAX_ADMINS 8
#define FIXTURE_MAX_NODES 16

typedef struct fixture {
    char tmpdir[PATH_MAX];               /* removed with its contents by destroy */
    size_t n_admins;
    uint32_t threshold;
    uint8_t admin_pk[FIXTURE_MAX_ADMINS][KETEN_SIGN_PK_BYTES];
    uint8_t *admin_sk[FIXTURE_MAX_ADMINS]; /* sodium_malloc, 64 bytes each */
    Keten__Anchor *anchor;
    uint8_t *anchor_bytes;
    size_t anchor_len;
    size_t n_nodes;
    keten_identity *nodes[FIXTURE_MAX_NODES]; /* in spec order */
    keten_dirbuild *draft;               /* the draft after version 1 was published */
    keten_directory *directory;          /* verified version 1 */
} fixture;

/* A network "testnet" with n_admins administrators, threshold k, and the
 * nodes of specs (NULL-terminated). Aborts the test on failure. */
fixture *fixture_new(size_t n_admins, uint32_t threshold, const char *const *specs);
void fixture_destroy(fixture **self_p);

/* Node identity by id (NULL if none). */
keten_identity *fixture_node(const fixture *self, const char *id);

/* Serialize the draft (issued now, valid valid_ms), sign with the admins
 * whose indexes are in signers (repeats allowed, to test them), and return
 * the SignedDirectory bytes (malloc). Does not advance the draft. */
uint8_t *fixture_sign_draft(fixture *self, uint64_t now_ms, uint64_t valid_ms,
    const size_t *signers, size_t n_signers, size_t *len_out);

/* Approve next (a node's next keys, keygen --rotate) as a rotation into the
 * draft, valid from now; publish to make it a version. */
void fixture_approve_rotation(fixture *self, const keten_identity *next);

/* Sign the draft with the first threshold admins, verify against the current
 * directory, advance the draft, replace self->directory; returns the new
 * SignedDirectory bytes (malloc). Aborts the test on failure. */
uint8_t *fixture_publish(fixture *self, size_t *len_out);
/* The same, the new version valid for valid_ms only (a directory that
 * expires while a test runs). */
uint8_t *fixture_publish_valid(fixture *self, uint64_t valid_ms, size_t *len_out);

/* (fixture_seal.c) Seal a signal JSON text from node `from` to the comma-separated ids `to`,
 * kind signal, created now, expiring in one hour. Returns the envelope bytes
 * (malloc); msg_id_out may be NULL. Aborts the test on failure. */
uint8_t *fixture_seal(fixture *self, const char *from, const char *to, const char *json,
    uint8_t *msg_id_out, size_t *len_out);

/* A path inside tmpdir (static buffer per call site is not used: out must
 * have PATH_MAX bytes). */
void fixture_path(const fixture *self, const char *name, char *out);

#endif
