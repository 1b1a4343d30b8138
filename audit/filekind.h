/*
 * filekind.h - what keten file a file or folder is, for the messages of
 * keten-audit when an argument names the wrong one ("--anchor dir.v1 is a
 * signed directory (network riec-test, version 1), not a network anchor").
 *
 * The answer is a description for a person, never a decision: nothing is
 * verified (a signed directory is recognised by its shape, not by its
 * signatures) and a file that is recognised is still refused by the parser
 * of the kind that was expected. Recognised: an empty file; a secret key
 * file (node, broker or administrator; for an unencrypted one its id and
 * role); an administrator's public key file; a network anchor; a signed
 * directory and the draft of the next version (ADMIN/state); an enrollment
 * request; a checkpoint note; a proof bundle; the manifest of an export; an
 * HTML page; and the folders: an audit export, a broker home, a partner
 * node's home, an administrators' folder, a bare LMDB store.
 *
 * Ownership: the caller's buffer receives the text (at most out_size - 1
 * bytes, always terminated). Thread safety: no state; safe from any thread.
 * A file is read through keten_file_read() (a regular file only, at most
 * FILEKIND_READ_MAX bytes: a FIFO or a device is never opened for reading)
 * and its bytes are wiped before they are freed (it may be a secret key
 * file); of a folder's identity.secret only the header (id and role) is
 * read. No function here changes the error detail of the caller
 * (keten_err_detail).
 */
#ifndef KETEN_AUDIT_FILEKIND_H
#define KETEN_AUDIT_FILEKIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most bytes filekind_of_path() reads of a file. */
#define FILEKIND_READ_MAX (16u << 20)

/* The kinds a caller may ask about (filekind_is). */
typedef enum filekind_kind {
    FILEKIND_UNKNOWN = 0, /* not recognised (or no such file) */
    FILEKIND_EMPTY,
    FILEKIND_SECRET_KEY,
    FILEKIND_ADMIN_PUB,
    FILEKIND_ANCHOR,
    FILEKIND_DIRECTORY,
    FILEKIND_DRAFT,
    FILEKIND_REQUEST,
    FILEKIND_CHECKPOINT,
    FILEKIND_BUNDLE,
    FILEKIND_MANIFEST,
    FILEKIND_HTML,
    FILEKIND_FOLDER, /* any folder, described further when recognised */
} filekind_kind;

/* The kind of the bytes of a file, and (when out is not NULL) a description
 * that starts with an article: "an empty file", "the secret key file of
 * node 'politie-mn' (role police)", "a checkpoint note (origin
 * keten/riec-test, tree size 65)". FILEKIND_UNKNOWN leaves out "". */
filekind_kind filekind_of_bytes(const uint8_t *buf, size_t len, char *out, size_t out_size);

/* The same for what path names: a folder ("an audit export (made by
 * keten-audit export)", "the home of partner node 'politie-mn' (role
 * police)", "a folder"), or a file read whole (filekind_of_bytes). A path
 * that does not exist or cannot be read is FILEKIND_UNKNOWN with "". */
filekind_kind filekind_of_path(const char *path, char *out, size_t out_size);

#endif
