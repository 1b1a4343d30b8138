/*
 * submit.h - the broker's submit path (docs/wire.md "Submit"), in two steps so that the expensive,
 * stateless part runs once even if a batch has to be run again:
 *
 *   submit_prepare(): no store access, no shared state written: it runs on
 *   the verifier pool's threads (pool.h), one call per submit of the batch,
 *   before the batch's transaction. Checks, in this order, each with its
 *   own reason: directory fresh (DIRECTORY_STALE: dir_fresh, which the main
 *   loop computed with dirstate_fresh() for the batch); size (TOO_LARGE); the
 *   envelope (keten_envelope_verify: parse MALFORMED, sender UNKNOWN_SENDER
 *   or REVOKED, signature BAD_SIGNATURE, header canonical MALFORMED, network
 *   WRONG_NETWORK); header sender = authenticated node (SENDER_MISMATCH);
 *   clock window (CLOCK_SKEW); not expired and lifetime within the
 *   directory's max_message_lifetime (EXPIRED). Then, kept apart because the
 *   msg_id check comes first: recipients current (UNKNOWN_RECIPIENT),
 *   category and purpose registered (UNREGISTERED), the policy for every
 *   recipient (POLICY, with the deciding rule).
 *
 *   submit_apply(): in the batch transaction. Store full (STORE_FULL, second
 *   only to DIRECTORY_STALE), then msg_id never seen (DUPLICATE; the same
 *   envelope again gets an Error DUPLICATE carrying the proof of its
 *   original "submitted" record, against the tree this batch ends with;
 *   that envelope gets it also when submit_prepare() found CLOCK_SKEW or
 *   EXPIRED: a retry after a lost ack, later than the window), then the
 *   rest. Accepted: a "submitted" audit record, the envelope
 *   stored, one queue entry per recipient, expiry and seen entries, and a
 *   SubmitAck slot staged (outq_proof(): the proof of the record is added at
 *   the batch's end; it is sent after the commit). The caller has checked
 *   that the connection's Hello was accepted. Refused: a
 *   "rejected" audit record (the authenticated node, the reason, the rule
 *   for POLICY, and the msg_id only when it is the node's own, see below)
 *   and an Error staged (with the msg_id whenever it could be read: it goes
 *   back to the node that sent it, which matches it to its outbox).
 *
 *   The msg_id of a rejected record: only one the connection's node signed
 *   and that names no other envelope. It is recorded when the envelope's
 *   signature verified, its signed sender is the connection's node, and the
 *   msg_id is not held by another envelope accepted before (it is then the
 *   msg_id of a message never accepted, or of this very envelope, sent
 *   again). Otherwise (an envelope that did not verify, another node's
 *   envelope relayed, a node's own envelope reusing the msg_id of an
 *   accepted message) the record carries no msg_id: a node cannot attach a
 *   "rejected" record to another party's message (docs/audit.md).
 *
 * Ownership: a submit_prep owns its keten_envelope_verified; free it with
 * submit_prep_clear(). submit_prepare() is thread-safe (it reads the
 * directory, the configuration and b->now, which do not change during the
 * batch); submit_apply() runs on the main loop only.
 */
#ifndef KETEN_BROKER_SUBMIT_H
#define KETEN_BROKER_SUBMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "conns.h"
#include "envelope.h"
#include "err.h"

#define SUBMIT_DETAIL_MAX 200

typedef struct submit_prep {
    Keten__Reason pre; /* refusal found before the msg_id check, or REASON_NONE */
    Keten__Reason post; /* refusal found after it, or REASON_NONE */
    uint32_t rule; /* allowing rule, or the refusing one for POLICY */
    keten_envelope_verified *v; /* when the envelope verified */
    bool has_msg_id; /* msg_id could be read (for the Error frame) */
    bool own_msg_id; /* ... and the node signed it: verified, sender = the connection */
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    char detail[SUBMIT_DETAIL_MAX];
} submit_prep;

void submit_prepare(
    const broker *b, const conn *c, const uint8_t *env, size_t len, bool dir_fresh, submit_prep *p);
void submit_prep_clear(submit_prep *p);

keten_err submit_apply(broker *b, conn *c, uint64_t request_id, const uint8_t *env,
    size_t len, const submit_prep *p) KETEN_MUST_CHECK;

#endif
