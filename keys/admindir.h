/*
 * admindir.h - the administrators' folder ADMIN that keten-keys works in:
 *
 *   ADMIN/network.pub        the trust anchor (serialized Anchor), 0644
 *   ADMIN/state              the draft of the next directory version
 *                            (a serialized Directory, see dirbuild.h), 0600
 *   ADMIN/published/vN.dir   every published version as signed so far
 *   ADMIN/names              the administrators' names (adminnames.h), 0644
 *   ADMIN/admin-I.secret     administrator keys made by init --admins N
 *   ADMIN/admin-I.pub        (tests and demos only)
 *
 * admindir_open() takes an exclusive lock on the folder (flock on the
 * directory itself, no lock file) for the life of the handle, so two
 * keten-keys commands never edit one ADMIN at once. Commands edit the draft
 * in memory and call admindir_save() only once everything else succeeded:
 * a failed command leaves ADMIN as it was (keten_file_write is atomic).
 *
 * Ownership: the handle owns the anchor and the draft; admindir_close()
 * frees them and releases the lock. Buffers returned through uint8_t ** are
 * malloc()ed and owned by the caller.
 */
#ifndef KETEN_KEYS_ADMINDIR_H
#define KETEN_KEYS_ADMINDIR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adminkey.h"
#include "adminnames.h"
#include "dirsig.h"
#include "dirbuild.h"
#include "err.h"
#include "keten.h"

#define ADMINDIR_ANCHOR "network.pub"
#define ADMINDIR_STATE "state"
#define ADMINDIR_PUBLISHED "published"
#define ADMINDIR_STATE_MAX KETEN_DIRECTORY_MAX

typedef struct admindir {
    char path[PATH_MAX];
    int lock_fd;
    Keten__Anchor *anchor;
    keten_dirbuild *draft;
} admindir;

/* Open and lock ADMIN, read the anchor and the draft (their networks must
 * agree). KETEN_ERR_EXISTS when the draft's version is already in
 * ADMIN/published (ADMIN/state restored from a backup older than the last
 * publish): no command works on such a draft. */
keten_err admindir_open(const char *path, admindir **out) KETEN_MUST_CHECK;

/* Is dir an ADMIN folder that keten-keys init began and did not finish:
 * no network.pub (init writes it last), a published folder with nothing in
 * it, and nothing but the files init writes before network.pub? Its anchor
 * never existed, so no partner can have it, and it may be removed. */
bool admindir_unfinished_init(const char *dir);

/* Release the lock and free; accepts NULL; sets *self_p = NULL. */
void admindir_close(admindir **self_p);

/* ADMIN/name into out (PATH_MAX bytes). */
keten_err admindir_file(
    const admindir *self, const char *name, char out[static PATH_MAX]) KETEN_MUST_CHECK;

/* ADMIN/published/v<version>.dir into out. */
keten_err admindir_published_file(
    const admindir *self, uint64_t version, char out[static PATH_MAX]) KETEN_MUST_CHECK;

/* Write the draft to ADMIN/state (atomically, 0600). */
keten_err admindir_save(admindir *self) KETEN_MUST_CHECK;

/* Version the next publish will carry (the draft's) and the latest published
 * one (0 when nothing was published yet). */
uint64_t admindir_next_version(const admindir *self);
uint64_t admindir_latest_version(const admindir *self);

/* Read ADMIN/published/v<version>.dir: the SignedDirectory bytes, and
 * optionally the parsed SignedDirectory and Directory (keten_pb_free). */
keten_err admindir_read_published(const admindir *self, uint64_t version, uint8_t **buf,
    size_t *len, Keten__SignedDirectory **sd, Keten__Directory **doc) KETEN_MUST_CHECK;

/* Number new policy rules above every rule id of every published version
 * (ADMIN/published/v1.dir .. the latest), so that a rule number, once
 * published, always means the same rule. */
keten_err admindir_reserve_rule_ids(admindir *self) KETEN_MUST_CHECK;

/* The administrators who must sign `version`: those of the version before
 * it (the anchor's for version 1). */
keten_err admindir_signing_set(
    const admindir *self, uint64_t version, adminkey_set *out) KETEN_MUST_CHECK;

/* The key an administrator signs with: key_file, or ADMIN/admin-I.secret
 * when key_file is NULL (admin_index >= 1); opened with adminkey_open(). */
keten_err admindir_open_signer(const admindir *self, const char *key_file, uint64_t admin_index,
    const char *passfile, keten_identity **out) KETEN_MUST_CHECK;

/* The last published version as ADMIN/published holds it, and how its
 * signatures stand. */
typedef struct admindir_published {
    uint64_t version; /* 0: nothing published yet (the rest is empty) */
    char file[PATH_MAX]; /* ADMIN/published/v<version>.dir */
    uint8_t *buf; /* its SignedDirectory bytes */
    size_t len;
    Keten__SignedDirectory *sd;
    Keten__Directory *doc;
    dirsig_tally tally; /* against the administrators who had to sign it */
    bool expired; /* at now_ms */
    bool valid; /* would nodes accept it now: enough signatures, not expired */
} admindir_published;

/* Read the last published version; free with admindir_published_free(). */
keten_err admindir_last_published(
    const admindir *self, uint64_t now_ms, admindir_published *out) KETEN_MUST_CHECK;
void admindir_published_free(admindir_published *p);

/* ADMIN/names (an empty set when the file does not exist), and writing it
 * back. *out: adminnames_destroy(). */
keten_err admindir_load_names(const admindir *self, adminnames **out) KETEN_MUST_CHECK;
keten_err admindir_save_names(const admindir *self, const adminnames *names) KETEN_MUST_CHECK;

#endif
