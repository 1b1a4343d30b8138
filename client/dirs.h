/*
 * dirs.h - the node's directory versions (docs/protocol.md "Directory", docs/wire.md
 * "Directory"): the versions it installed are kept in the store and the
 * highest is in force; at start the stored chain is verified from the
 * anchor and the --directory file is installed only if it is newer
 * (restarting with an old file changes nothing). Pushed chains are installed
 * only if they verify from the version in force and are newer.
 *
 * Fail closed: past its directory's expiry the node opens no delivery and
 * signs no receipt (the deliveries stay at the broker and are sent again
 * once a fresh version is installed; alarm directory-expired). It sends
 * nothing while its directory is not fresh, while
 * it is not a current node of it (not yet approved, revoked, or other keys),
 * or while a checkpoint has named a newer version than it holds (it asks the
 * broker for the chain; if it does not get it within KETEN_NODE_DIR_WITHHELD_MS,
 * that is the alarm directory-withheld).
 */
#ifndef KETEN_NODE_DIRS_H
#define KETEN_NODE_DIRS_H

#include "err.h"
#include "keten.h"
#include "node.h"

/* Load the stored chain and the --directory file; node->dir is set. The
 * test hook KETEN_NODE_TEST_DIRECTORY_AHEAD_MS=N (ms, 0 to 3650 days) makes
 * the node judge its directory's freshness N ms later than now (never
 * earlier: it can only make the node fail closed sooner); a bad value is
 * KETEN_ERR_INVALID. */
keten_err keten_dirs_load(keten_node *node) KETEN_MUST_CHECK;

/* The time (ms) at which the node judges its directory's freshness: now,
 * or later under the test hook above. */
uint64_t keten_dirs_now_ms(const keten_node *node);

/* Install a pushed chain (DirectoryPush). */
keten_err keten_dirs_on_push(keten_node *node, const Keten__DirectoryPush *push) KETEN_MUST_CHECK;

/* SIGHUP: read the --directory file again and install it if it verifies
 * from the version in force (signatures, network, and not expired) and is
 * newer (*installed). The same version changes nothing and is KETEN_OK; an
 * older or conflicting one is KETEN_ERR_ROLLBACK, a file that does not
 * verify its error (detail set): the version in force stays. */
keten_err keten_dirs_reload(keten_node *node, bool *installed) KETEN_MUST_CHECK;

/* Ask the broker for every version after the installed one. */
void keten_dirs_request(keten_node *node);

/* A checkpoint named version: if it is newer than ours, remember it (the
 * node fails closed) and ask for the chain. The frame being handled
 * (node->frame, the signed checkpoint that named it) is kept in memory as
 * the evidence of directory-withheld. */
void keten_dirs_need(keten_node *node, uint64_t version);

/* Each loop round: raise directory-expired once the directory in force has
 * expired (once per version, also on an idle node); re-ask a needed version
 * and raise directory-withheld when it takes too long, with the checkpoint
 * frame that named the version kept as its evidence. */
void keten_dirs_tick(keten_node *node);

/* Free the kept frame of keten_dirs_need (at the node's end). */
void keten_dirs_forget_needed(keten_node *node);

/* KETEN_OK if the node may send now; otherwise why not (detail set). */
keten_err keten_dirs_send_ok(const keten_node *node) KETEN_MUST_CHECK;

/* KETEN_OK if the node may open deliveries and sign receipts now: its
 * directory is fresh. Otherwise KETEN_ERR_EXPIRED (detail set: why and what
 * to do), and the alarm directory-expired is raised, once per version. */
keten_err keten_dirs_receive_ok(keten_node *node) KETEN_MUST_CHECK;

/* n deliveries were left without a receipt because the directory had
 * expired: they stay at the broker. When a fresh version is installed the
 * node says Hello again, and the broker sends every unreceipted delivery
 * again. */
void keten_dirs_held(keten_node *node, uint64_t n);

/* The reason the node opens and sends nothing while its directory has
 * expired, with what to do; NULL while it is fresh. Static text. */
const char *keten_dirs_expired_advice(const keten_node *node);

/* This node's current certificate in the installed directory, or NULL if
 * it is not a current node or its keys differ from the identity's. */
const Keten__NodeCert *keten_dirs_my_cert(const keten_node *node);

#endif
