/*
 * alarm.h - the node's alarms and warnings (docs/protocol.md, "What nodes check themselves").
 *
 * An alarm is evidence that the broker misbehaved or the log does not add
 * up: an inconsistent checkpoint, a proof that does not lead to a signed
 * root, a record that is not the message it is said to be, a directory
 * withheld or contradicted.
 * Raising one writes a log line (level error), counts it, and stores it in
 * the node store (state "alarms") under a number of its own (1, 2, ... never
 * given twice), so it survives restarts; `keten-node status` shows alarms
 * and exits with 3 while one not acknowledged is stored. Nothing clears an
 * alarm by itself.
 *
 * Acknowledgement (keten_alarm_ack): the node's operator, on the Unix
 * socket only, marks an alarm as dealt with: when, who (the Unix user the
 * socket names) and a note saying what was done. The alarm, its detail and
 * its evidence stay as they were; it no longer makes status exit 3 nor
 * counts in keten_node_alarms. It is written with the list, and an
 * `alarm-acknowledged` event is appended in the same transaction. An alarm
 * that stands for a state still true is not acknowledged
 * (keten_alarm_state_holds): status must go on saying it.
 *
 * A warning (a checkpoint not witnessed by a quorum in time) is logged and
 * counted but does not change the exit code.
 *
 * Alarm kinds (stable names, shown in status):
 *   inconsistent-checkpoint  a checkpoint that is not an extension of the
 *                            node's reference (consistency proof failed, or
 *                            same size with another root)
 *   bad-checkpoint           a checkpoint whose signature does not verify
 *                            with the broker's log key
 *   bad-proof                a leaf proof (ack, delivery, receipt or expiry
 *                            notice) whose path does not lead to the root of
 *                            the checkpoint of its size, or whose record is
 *                            not the one it must be (another message,
 *                            another sender, a receipt that does not verify,
 *                            an expiry dated before the message's expires_at
 *                            or listing a recipient whose answer the log
 *                            holds before it)
 *   directory-withheld       a checkpoint named a directory version the node
 *                            could not get within the timeout (the frame
 *                            of that checkpoint kept as evidence)
 *   directory-mismatch       a checkpoint named a directory version with
 *                            another hash, or a lower version than a
 *                            checkpoint of a smaller tree named
 *   directory-expired        the directory in force expired and no fresh
 *                            version came: the node opens and receipts
 *                            nothing until one is installed (raised once
 *                            per version)
 *   revoked-receipt          a forwarded receipt signed with a revoked or
 *                            superseded key that does not count: revoked
 *                            for compromise, or dated at or after the
 *                            revocation (not recorded)
 *   log-shorter              the broker refused this node's Hello because
 *                            its log is shorter than the checkpoint the
 *                            node accepted (UNKNOWN_CHECKPOINT): records it
 *                            signed are gone (a restore from an older
 *                            backup, a truncation). Stored with the
 *                            broker's answer as evidence, and a refusal
 *                            (below) as well
 *
 * Refusal (keten_alarm_refused): the broker ended this node's connection
 * with an Error {REVOKED | KEYS_REPLACED | UNKNOWN_SENDER, directory_version},
 * or answered its Hello with UNKNOWN_CHECKPOINT (docs/wire.md, "Connection
 * refusals"). That is an alarm of kind "revoked", "keys-replaced",
 * "not-current" or "log-shorter" (logged, counted), kept in the store's
 * state "refused" (reason, version, time, the transport key it concerns)
 * rather than the alarm list: it holds while the node runs with that key,
 * and goes away by itself when the node starts with other keys (a
 * rotation) or connects again and is not refused. While it holds, `send`
 * fails at once and `status` exits non-zero, both saying what to do; the
 * node does not reconnect until it is restarted.
 */
#ifndef KETEN_NODE_ALARM_H
#define KETEN_NODE_ALARM_H

#include <jansson.h>

#include "err.h"
#include "node.h"

#define KETEN_ALARM_KEEP 256 /* most alarms kept in the store */
/* The evidence table is bounded, so that a broker sending false frames
 * without end cannot fill the node's store: a frame is kept only while the
 * table holds fewer than KETEN_ALARM_EVIDENCE_MAX frames and its pages take
 * less than KETEN_ALARM_EVIDENCE_BYTES. The first frames are the ones kept
 * (the alarm list keeps the newest alarms; each kept frame's reason line
 * says which alarm it belongs to). */
#define KETEN_ALARM_EVIDENCE_MAX 256
#define KETEN_ALARM_EVIDENCE_BYTES (64ull << 20)

/* Raise an alarm of kind with a detail line (no content). Failing to store
 * it is logged; the alarm is still counted and logged. */
void keten_alarm_raise(keten_node *node, const char *kind, const char *fmt, ...) KETEN_PRINTF(3, 4);

/* The same, and the frame being handled (node->frame) kept in the store's
 * `evidence` table with the detail as its reason; not kept again when the
 * same frame bytes were kept since the start, nor past the table's limits
 * above (logged, counted in counters.evidence_not_kept). */
void keten_alarm_evidence(keten_node *node, const char *kind, const char *fmt, ...)
    KETEN_PRINTF(3, 4);

/* Number of frames kept as evidence. */
keten_err keten_alarm_evidence_count(keten_node *node, size_t *out) KETEN_MUST_CHECK;

/* Log and count a warning. */
void keten_alarm_warn(keten_node *node, const char *what, const char *fmt, ...) KETEN_PRINTF(3, 4);

/* The broker ended the connection with a refusal Error (err->msg_id empty,
 * reason REVOKED, KEYS_REPLACED or UNKNOWN_SENDER), or refused the node's
 * Hello (UNKNOWN_CHECKPOINT): set node->refused*, store it, log the alarm.
 * Whether the node's own directory confirms it (its certificate is not
 * current in the version it holds) is recorded too; for UNKNOWN_CHECKPOINT
 * the node's own evidence is the signed checkpoint it holds, and the alarm
 * "log-shorter" is also stored with the broker's answer (node->frame). */
void keten_alarm_refused(keten_node *node, const Keten__Error *err);

/* Load the stored refusal at start: kept if it concerns the node's
 * transport key, dropped (and said so) otherwise. */
void keten_alarm_refusal_load(keten_node *node);

/* The node connected and was not refused: forget a stored refusal. */
void keten_alarm_refusal_clear(keten_node *node);

/* The refusal's kind ("revoked", "keys-replaced", "not-current",
 * "log-shorter") and the line that says what to do ("keys replaced in
 * version N: start with the new keys"); "" when not refused. */
const char *keten_alarm_refusal_kind(Keten__Reason reason);
void keten_alarm_refusal_text(Keten__Reason reason, uint64_t version, char *out, size_t size);

/* The error a refused node's commands fail with (and so their exit code):
 * KETEN_ERR_REVOKED, KETEN_ERR_INCONSISTENT for a log shorter than the
 * node's checkpoint (both 3: verification), else KETEN_ERR_UNKNOWN_NODE. */
keten_err keten_alarm_refusal_err(Keten__Reason reason);

/* The stored alarms, oldest first, as a JSON array of {id, kind, detail, at,
 * acknowledged, and once acknowledged acknowledged_at, acknowledged_by,
 * note}; new reference. */
keten_err keten_alarm_list(keten_node *node, json_t **out) KETEN_MUST_CHECK;

/* How many stored alarms are not acknowledged (*open) and acknowledged. */
keten_err keten_alarm_count(keten_node *node, size_t *open, size_t *acknowledged) KETEN_MUST_CHECK;

#define KETEN_ALARM_WHO_BYTES 65 /* KETEN_NODESTORE_BY_MAX + 1 */

/* Who acknowledges, from the API caller's peer ("uid=N" on the Unix
 * socket; NULL: this process's effective uid): the user's name when the
 * system knows it and it is 1-64 of [A-Za-z0-9._-], else "uid=N". */
void keten_alarm_who(const char *peer, char out[static KETEN_ALARM_WHO_BYTES]);

/* Why an alarm of kind may not be acknowledged now, or NULL: a
 * directory-expired alarm while the directory in force is expired, a
 * directory-withheld one while the named version is not installed. (The
 * broker's refusals are not in the list: status shows them apart and they
 * go on making it fail while they hold; a log-shorter alarm may be
 * acknowledged, its refusal stays.) */
const char *keten_alarm_state_holds(keten_node *node, const char *kind);

/* Acknowledge alarm id: by (keten_alarm_who) and note (1-200 characters,
 * nodestore.h). *out: the alarm as keten_alarm_list gives it (new
 * reference). Errors: KETEN_ERR_INVALID (a bad note or by), KETEN_ERR_NOT_FOUND
 * (no such alarm), KETEN_ERR_EXISTS (acknowledged before: the detail says
 * by whom, when and why), KETEN_ERR_MISMATCH (its state still holds),
 * KETEN_ERR_MALFORMED (the list is damaged: nothing changed), store errors. */
keten_err keten_alarm_ack(
    keten_node *node, uint64_t id, const char *by, const char *note, json_t **out) KETEN_MUST_CHECK;

#endif
