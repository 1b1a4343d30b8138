/*
 * dirstate.h - the broker's directory (docs/wire.md
 * "Directory"): every installed version is kept in the store (`directories`)
 * and the newest is the one in force.
 *
 * At start the stored versions are verified as a chain (the oldest against
 * the anchor, each next one against the one before, signatures only: they
 * were checked for time when installed). Then the --directory file is
 * verified against the newest stored version (or the anchor) and installed
 * only if it is newer; an older file, or a different document under a
 * version already held, is ignored with a warning: the persisted version
 * wins. A newer file whose version has already expired is not installed
 * either (logged as an error naming the version and its expiry): the
 * version held stays in force, and at start with nothing stored the broker
 * refuses to run (KETEN_ERR_EXPIRED). A *stored* version that has expired
 * since it was installed stays in force at a restart: the broker runs and
 * refuses submits (DIRECTORY_STALE) until a fresh one comes. SIGHUP repeats
 * the file step.
 *
 * Installing: in its own write transaction, store the signed bytes and
 * append a "directory-installed" audit record; after the commit, the
 * version is pushed to every connected node and connections of nodes that
 * are no longer current are cut off (dirstate_cut_off: one Error naming
 * the reason and the version, counted and audited; then no frames in,
 * nothing out but that Error again for every frame).
 *
 * The directory must list a "broker" certificate whose id and keys are this
 * broker's; otherwise it is not installed (at start: the broker refuses to
 * run).
 *
 * Ownership: the dirstate owns the anchor and the directory objects;
 * pointers returned by dirstate_current() stay valid until the next
 * install. Single-threaded (main loop).
 */
#ifndef KETEN_BROKER_DIRSTATE_H
#define KETEN_BROKER_DIRSTATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "directory.h"
#include "err.h"

typedef struct dirstate {
    Keten__Anchor *anchor;
    keten_directory *cur;
    char path[PATH_MAX];
    bool stale; /* last known freshness, to log a change */
    uint64_t stale_logged_ms; /* while stale, the error is repeated every minute */
} dirstate;

/* Load the anchor and the stored chain, then install the file if newer.
 * Needs b->st, b->me, b->m. */
keten_err dirstate_open(broker *b, const char *anchor_path, const char *dir_path) KETEN_MUST_CHECK;
void dirstate_destroy(dirstate **self_p);

/* SIGHUP: read the file again and install it if it is newer (*installed). */
keten_err dirstate_reload(broker *b, bool *installed) KETEN_MUST_CHECK;

/* Is the directory in force fresh at b->now? Logs a change of state. */
bool dirstate_fresh(broker *b);

/* The current certificate of node, if it is a partner (not the broker),
 * valid at now, and its transport key is key (NULL: any); else NULL. */
const Keten__NodeCert *dirstate_node_cert(
    const keten_directory *dir, const char *node, const uint8_t *key, uint64_t now);

/* Why node's connection with transport key `key` is refused under dir at
 * now: REASON_NONE (its certificate is current), REASON_KEYS_REPLACED (the
 * id is listed with other keys: a rotation), REASON_REVOKED
 * (the id's certificate was revoked), else REASON_UNKNOWN_SENDER (no current
 * certificate: unknown, or out of its validity period). */
Keten__Reason dirstate_refusal(
    const keten_directory *dir, const char *node, const uint8_t *key, uint64_t now);

/* Cut off connection c, whose certificate is no longer current (reason from
 * dirstate_refusal()): mark it (c->revoked: no frame of it is processed and
 * nothing more is delivered to it), forget what was in flight on it, count
 * it (keten_auth_failed_total), queue its auth-failed audit record, and
 * stage one Error {reason, directory_version} for it. */
keten_err dirstate_cut_off(broker *b, conn *c, Keten__Reason reason) KETEN_MUST_CHECK;

/* A frame came from a connection already cut off: stage the same Error
 * again (nothing else: the frame is dropped unread). */
keten_err dirstate_refuse_again(broker *b, const conn *c) KETEN_MUST_CHECK;

/* Answer a DirectoryRequest (in the batch transaction): the versions after
 * after_version, oldest first, as many as fit in one frame. */
keten_err dirstate_serve(
    broker *b, const conn *c, uint64_t request_id, uint64_t after_version) KETEN_MUST_CHECK;

#endif
