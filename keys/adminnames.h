/*
 * adminnames.h - the administrators' names, kept in ADMIN/names.
 *
 * The anchor (network.pub) and the directory carry administrators' keys
 * only: their signed formats have no place for a name, and nodes and the
 * broker need none. The names are for the administrators themselves, so
 * keten-keys keeps them beside the draft, in a local text file:
 *
 *   # comment lines start with '#'
 *   u3OaHlBDjrT/Q3ASa9/P0RQKzWWUqAy4/Dqy7DD8R4U= J. de Vries
 *
 * one line per key in the public key file's format (adminkey.h): the key,
 * one space, the name. The key itself is the entry's key (not a shortened
 * fingerprint, which could collide). init and set-admins write the names
 * the .pub files carry; an entry is never removed, so that a former
 * administrator's signature on an old version keeps its name. A name is a
 * label for people: it is not signed, and only the key decides whether a
 * signature counts.
 *
 * Ownership: adminnames_load() returns an object freed with
 * adminnames_destroy(); strings returned by adminnames_find() stay valid
 * until the next adminnames_set() or adminnames_destroy().
 * Thread safety: none needed (one command-line process).
 */
#ifndef KETEN_KEYS_ADMINNAMES_H
#define KETEN_KEYS_ADMINNAMES_H

#include <stddef.h>
#include <stdint.h>

#include "adminkey.h"
#include "err.h"
#include "keten.h"

#define ADMINNAMES_FILE "names"
#define ADMINNAMES_MAX 256 /* entries in one file */
#define ADMINNAMES_FILE_MAX (ADMINNAMES_MAX * 160) /* bytes */
/* "NAME (fingerprint FPR)" or "key BASE64 (fingerprint FPR)", NUL included. */
#define ADMINNAMES_LABEL_BYTES 160

typedef struct adminnames adminnames;

/* An empty set of names. */
keten_err adminnames_new(adminnames **out) KETEN_MUST_CHECK;

/* Read a names file; a file that does not exist gives an empty set.
 * KETEN_ERR_MALFORMED (with the line number) for a line that is not a key
 * and a valid name, KETEN_ERR_TOO_LARGE over the caps. */
keten_err adminnames_load(const char *path, adminnames **out) KETEN_MUST_CHECK;

/* Write the names file (atomically, mode 0644). */
keten_err adminnames_save(const adminnames *self, const char *path) KETEN_MUST_CHECK;

void adminnames_destroy(adminnames **self_p);

/* Name pk (replacing an earlier name). KETEN_ERR_INVALID for a name that
 * adminkey_name_valid() refuses, KETEN_ERR_TOO_LARGE when full. */
keten_err adminnames_set(adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    const char *name) KETEN_MUST_CHECK;

/* The name of pk, or NULL (also when self is NULL). */
const char *adminnames_find(const adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES]);

/* "J. de Vries (fingerprint 3f2a:9c01:d4e5:b6a7)", or for a key without a
 * name "key BASE64 (fingerprint ...)"; self may be NULL. */
void adminnames_label(const adminnames *self, const uint8_t pk[static KETEN_SIGN_PK_BYTES],
    char out[static ADMINNAMES_LABEL_BYTES]);

#endif
