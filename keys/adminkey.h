/*
 * adminkey.h - administrator keys as keten-keys handles them: the public key
 * files, administrator sets (keys + threshold) of an anchor or a directory,
 * fingerprints, and opening the key an administrator signs with.
 *
 * A public key file (FILE.pub) is one line: the standard base64 of the
 * 32-byte Ed25519 key, optionally followed by one space and the
 * administrator's name (1 to ADMINKEY_NAME_MAX bytes of printable UTF-8),
 * the way an OpenSSH public key line carries a comment. The name is a label
 * for people, not signed: it travels with the key when the keys are checked
 * aloud in the ceremony, and keten-keys keeps it in ADMIN/names
 * (adminnames.h).
 *
 * A fingerprint is the first ADMINKEY_FPR_RAW bytes of the SHA-256 of the
 * 32-byte key, in hex, in groups of four: short enough to read aloud, and
 * what every output prints beside an administrator's name.
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
#define ADMINKEY_NAME_MAX 64 /* an administrator's name, bytes */
#define ADMINKEY_FPR_RAW 8 /* bytes of SHA-256 in a fingerprint */
/* "3f2a:9c01:d4e5:b6a7" and its NUL. */
#define ADMINKEY_FPR_BYTES (ADMINKEY_FPR_RAW * 2 + ADMINKEY_FPR_RAW / 2)

/* Administrators and threshold of one version (or of the anchor). */
typedef struct adminkey_set {
    size_t n;
    uint32_t threshold;
    uint8_t keys[KETEN_MAX_ADMINS][KETEN_SIGN_PK_BYTES];
} adminkey_set;

/* The names of the keys of a set, by index; "" where a key has none. */
typedef char adminkey_name[ADMINKEY_NAME_MAX + 1];

/* Is name usable as an administrator's name: 1 to ADMINKEY_NAME_MAX bytes
 * of valid UTF-8 without control characters, not starting or ending with a
 * space? */
bool adminkey_name_valid(const char *name);

/* Read FILE.pub into pk and, when name is not NULL, its name ("" when the
 * line has none). KETEN_ERR_MALFORMED when it is not one base64 key with an
 * optional valid name. */
keten_err adminkey_pub_read(
    const char *path, uint8_t pk[static KETEN_SIGN_PK_BYTES], char *name) KETEN_MUST_CHECK;

/* Write pk (and name, unless NULL or "") as FILE.pub (mode 0644, refused if
 * it exists). */
keten_err adminkey_pub_write(const char *path, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    const char *name) KETEN_MUST_CHECK;

/* Read the public key files named by the --admin-pub values args[0..n)
 * (each one file or a comma-separated list) into set (threshold left 0) and,
 * when names is not NULL, their names into names[0..set->n) (an array of
 * KETEN_MAX_ADMINS). Two files holding the same key are
 * KETEN_ERR_DUPLICATE_KEY; more than KETEN_MAX_ADMINS keys
 * KETEN_ERR_INVALID. */
keten_err adminkey_pub_read_list(
    char *const *args, size_t n, adminkey_set *set, adminkey_name *names) KETEN_MUST_CHECK;

/* The fingerprint of pk into out. */
void adminkey_fingerprint(
    const uint8_t pk[static KETEN_SIGN_PK_BYTES], char out[static ADMINKEY_FPR_BYTES]);

/* Open an administrator's secret key file: first what the file is (a public
 * key or another file is KETEN_ERR_WRONG_TYPE before anything else), then
 * its permissions, then the passphrase (--passphrase-file passfile, which may
 * be NULL, KETEN_PASSPHRASE, or the terminal, where a wrong passphrase is
 * asked again: KETEN_PASSPHRASE_TRIES tries). An unencrypted key (test keys)
 * opens without a passphrase. *out: keten_identity_destroy(). */
keten_err adminkey_open(
    const char *path, const char *passfile, keten_identity **out) KETEN_MUST_CHECK;

/* A fresh administrator key in an identity (id/role "admin"). */
keten_err adminkey_generate(keten_identity **out) KETEN_MUST_CHECK;

/* Fill a set from protobuf admin keys (each must be 32 bytes; at most
 * KETEN_MAX_ADMINS). */
keten_err adminkey_set_from_pb(const ProtobufCBinaryData *admins, size_t n, uint32_t threshold,
    adminkey_set *out) KETEN_MUST_CHECK;

/* Index of pk in the set, or -1. */
int adminkey_set_find(const adminkey_set *set, const uint8_t pk[static KETEN_SIGN_PK_BYTES]);

/* Same keys (in any order) and same threshold. */
bool adminkey_set_equal(const adminkey_set *a, const adminkey_set *b);

#endif
