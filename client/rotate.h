/*
 * rotate.h - a key rotation in the node's own home (docs/operations.md,
 * "Rotating a node's keys"; keten-node keygen --rotate).
 *
 * Files in HOME (all secret key files mode 0600, in the format of
 * identity.h, protected by the same passphrase as identity.secret):
 *   identity.secret             the keys the node runs with
 *   identity.next.secret        new keys made by keygen --rotate, waiting
 *                               for their certificate
 *   identity.next.request       their enrollment request (for the
 *                               administrators: keten-keys approve --rotate)
 *   identity.superseded.secret  the keys a switch replaced, kept only to
 *                               open deliveries sealed to the old encryption
 *                               key, until the rotation time (when the
 *                               directory superseded the old certificate;
 *                               the switch time if it does not say) + the
 *                               directory's max_message_lifetime, then
 *                               overwritten and removed
 *
 * The switch: when the installed directory lists this node's id with the
 * next keys (at start, after a directory reload, whether or not the file
 * reloaded was newer, or when the broker ends the connection with
 * KEYS_REPLACED), identity.secret becomes
 * identity.superseded.secret, identity.next.secret becomes identity.secret
 * (and identity.next.request identity.request), the rotation time is stored
 * (state "superseded-at"), the node forgets the refusal of the old key and
 * reconnects with the new one. The store is kept as it is: messages already
 * received stay readable; envelopes queued before the switch stay queued,
 * signed with the key that was current when they were made, and are sent
 * after it: the broker accepts an envelope signed with a superseded key if
 * it was created before the rotation (envelope.h), so none is lost and
 * none is sent twice (the msg_id does not change). Deliveries sealed to the
 * old encryption key open with the superseded keys.
 *
 * Next keys made while the daemon runs (keygen --rotate on a running node)
 * are opened when the node needs them: when the installed directory lists
 * this node's id with keys other than its current ones, at a reload or at
 * the broker's KEYS_REPLACED. identity.secret's passphrase can be read only
 * once (KETEN_PASSPHRASE is wiped, a terminal may be gone), so the daemon
 * keeps it for this in sodium_malloc() memory that is made inaccessible
 * between uses (keten_rotate_keep_passphrase) and wiped when it stops.
 *
 * A crash between the two renames is finished at the next start
 * (keten_rotate_recover). Single-threaded (the daemon's loop); the secret
 * keys are in sodium_malloc() memory (identity.h).
 */
#ifndef KETEN_NODE_ROTATE_H
#define KETEN_NODE_ROTATE_H

#include <stdbool.h>

#include "err.h"
#include "node.h"

#define KETEN_ROTATE_CURRENT "identity.secret"
#define KETEN_ROTATE_REQUEST "identity.request"
#define KETEN_ROTATE_NEXT "identity.next.secret"
#define KETEN_ROTATE_NEXT_REQUEST "identity.next.request"
#define KETEN_ROTATE_SUPERSEDED "identity.superseded.secret"

/* keten-node keygen --rotate: open HOME/identity.secret (its passphrase:
 * passfile, KETEN_PASSPHRASE or the terminal), make new keys for the same
 * id, role and organisation, write identity.next.secret (same passphrase;
 * never overwritten: an existing one is KETEN_ERR_EXISTS) and
 * identity.next.request, and print what to do (JSON with json). */
keten_err keten_rotate_keygen(const char *home, const char *passfile, bool json) KETEN_MUST_CHECK;

/* Before identity.secret is opened: finish a switch that a crash
 * interrupted (identity.secret missing, the next and superseded keys
 * there). */
keten_err keten_rotate_recover(const char *home) KETEN_MUST_CHECK;

/* At start, with node->me open and the directory installed: open the next
 * and superseded keys if present (node->next, node->old) with
 * identity.secret's passphrase (pass, NULL when that file has none), wipe
 * superseded keys past their time. Next keys the installed directory does
 * not list yet are logged as waiting for their certificate.
 * Errors: those of keten_identity_load() (with a detail naming the file),
 * KETEN_ERR_WRONG_TYPE for next keys of another node. */
keten_err keten_rotate_open(keten_node *node, const char *pass, size_t passlen) KETEN_MUST_CHECK;

/* Keep identity.secret's passphrase for next keys made later: takes over
 * *pass_p (sodium_malloc memory from keten_passphrase_get(), or NULL for a
 * file without one; set to NULL), makes it inaccessible until it is used.
 * keten_rotate_forget_passphrase() wipes and frees it (accepts none). */
void keten_rotate_keep_passphrase(keten_node *node, char **pass_p, size_t passlen);
void keten_rotate_forget_passphrase(keten_node *node);

/* Switch to the next keys if the installed directory lists them as this
 * node's certificate; true if it switched (the caller reconnects). Next
 * keys not open yet (made after the start) are opened first if the
 * directory lists this id with keys other than the current ones, with the
 * kept passphrase; a file that cannot be opened (mode, owner, passphrase,
 * another node's keys) is logged with why and changes nothing, and the
 * next call tries again. A failed rename is logged and changes nothing. */
bool keten_rotate_try_switch(keten_node *node);

/* Wipe the superseded keys once their time is past (called now and then). */
void keten_rotate_tick(keten_node *node);

#endif
