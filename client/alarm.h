/*
 * alarm.h - the node's alarms and warnings (DESIGN section 7).
 *
 * An alarm is evidence that the broker misbehaved or the log does not add
 * up: an inconsistent checkpoint, a message missing from the log, a record
 * that is not what was acknowledged, a directory withheld or contradicted.
 * Raising one writes a log line (level error), counts it, and stores it in
 * the node store (state "alarms"), so it survives restarts; `keten-node
 * status` shows alarms and exits with 3 while any is stored. Alarms stay
 * until an operator has looked into them (there is no automatic clearing).
 *
 * A warning (a checkpoint not witnessed by a quorum in time) is logged and
 * counted but does not change the exit code.
 *
 * Alarm kinds (stable names, shown in status):
 *   inconsistent-checkpoint  a checkpoint that is not an extension of the
 *                            node's reference (consistency proof failed, or
 *                            same size with another root)
 *   inclusion-missing        an acknowledged or received message not proven
 *                            in an accepted checkpoint within the timeout
 *   inclusion-failed         an inclusion proof that does not verify, or a
 *                            leaf that is not the message's submitted record
 *   directory-withheld       a checkpoint named a directory version the node
 *                            could not get within the timeout
 *   directory-mismatch       a checkpoint named a directory version with
 *                            another hash, or a lower version than before
 */
#ifndef KETEN_NODE_ALARM_H
#define KETEN_NODE_ALARM_H

#include <jansson.h>

#include "err.h"
#include "node.h"

#define KETEN_ALARM_KEEP 256 /* most alarms kept in the store */

/* Raise an alarm of kind with a detail line (no content). Failing to store
 * it is logged; the alarm is still counted and logged. */
void keten_alarm_raise(keten_node *node, const char *kind, const char *fmt, ...) KETEN_PRINTF(3, 4);

/* Log and count a warning. */
void keten_alarm_warn(keten_node *node, const char *what, const char *fmt, ...) KETEN_PRINTF(3, 4);

/* The stored alarms, as a JSON array of {kind, detail, at}; new reference. */
keten_err keten_alarm_list(keten_node *node, json_t **out) KETEN_MUST_CHECK;

#endif
