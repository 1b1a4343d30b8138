/*
 * adminkey.h - administrator keys as keten-keys handles them: the public key
 * files (FILE.pub: one line, standard base64 of the 32-byte Ed25519 key),
 * administrator sets (keys + threshold) of an anchor or a directory, and
 * opening the key an administrator signs with.
 *
 * An administrator's secret key file is an ordinary keten identity file
 * (identity.h) with id "admin" and role "admin"; only its signing key is used.
 * Thread safety: none needed (one command-line process).
 */
#ifndef KETEN_KEYS_ADMINKEY_H
#define KETEN_KEYS_ADMINKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "identity.h"
#include "keten.h"

#define ADMINKEY_ID "admin"
#define ADMINKEY_ROLE "admin"
#define ADMINKEY_ORG "network administrator"
#define ADMINKEY_PUB_MAX 1024 /* a .pub file is one short line */

/* Administrators and threshold of one version (or of the anchor). */
typedef struct adminset {
    size_t n;
    uint32_t threshold;
    uint8_t keys[KETEN_MAX_ADMINS][KETEN_SIGN_PK_BYTES];
} adminset;

/* Read FILE.pub into pk. KETEN_ERR_MALFORMED when it is not one base64 key. */
keten_err adminkey_pub_read(
    const char *path, uint8_t pk[static KETEN_SIGN_PK_BYTES]) KETEN_MUST_CHECK;

/* Write pk as FILE.pub (mode 0644, refused if it exists). */
keten_err adminkey_pub_write(
    const char *path, const uint8_t pk[static KETEN_SIGN_PK_BYTES]) KETEN_MUST_CHECK;

/* Read the public key files named by the --admin-pub values args[0..n)
 * (each one file or a comma-separated list) into set (threshold left 0).
 * Two files holding the same key are KETEN_ERR_DUPLICATE_KEY; more than
 * KETEN_MAX_ADMINS keys KETEN_ERR_INVALID. */
keten_err adminkey_pub_read_list(char *const *args, size_t n, adminset *set) KETEN_MUST_CHECK;

/* A fresh administrator key in an identity (id/role "admin"). */
keten_err adminkey_generate(keten_identity **out) KETEN_MUST_CHECK;

/* Fill a set from protobuf admin keys (each must be 32 bytes; at most
 * KETEN_MAX_ADMINS). */
keten_err adminset_from_pb(const ProtobufCBinaryData *admins, size_t n, uint32_t threshold,
    adminset *out) KETEN_MUST_CHECK;

/* Index of pk in the set, or -1. */
int adminset_find(const adminset *set, const uint8_t pk[static KETEN_SIGN_PK_BYTES]);

/* Same keys (in any order) and same threshold. */
bool adminset_equal(const adminset *a, const adminset *b);

/* First index i > 0 whose key equals an earlier one, or 0 when all distinct. */
size_t adminset_first_duplicate(const adminset *set);

#endif
