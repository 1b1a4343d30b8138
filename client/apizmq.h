/*
 * apizmq.h - the node's former local API over ZeroMQ, kept on
 * ipc://HOME/api-zmq.sock only until the command line speaks HTTP (api.h,
 * http.h); then it is removed. For the command line and for partner
 * applications: a ZeroMQ ROUTER socket bound on ipc://HOME/api-zmq.sock,
 * chmod 0600 right after the bind (and created under umask 077), so only the
 * node's own user can talk to it. Clients use a REQ socket: one JSON object
 * per request, one JSON object per reply (jansson; at most
 * KETEN_API_REQUEST_MAX bytes).
 *
 * Requests ("cmd" and its fields) and replies:
 *   {"cmd":"ping"}                                     -> {"ok":true,"node":ID}
 *   {"cmd":"send","to":PARTIES,"kind":K,"signal":TEXT[,"wait":true,"timeout_ms":N]}
 *        -> {"ok":true,"msg_id":HEX,"state":"pending"|"accepted"[,"leaf_index":N]}
 *        K is "signal" or "query"; "feedback" is refused (usage): feedback
 *        answers a received signal, through "reply".
 *   {"cmd":"reply","msg_id":HEX[,"kind":"reply"|"feedback"],"signal":TEXT[,"wait":...]}
 *        (same answer) a reply (the default) answers a received query, at most
 *        once (a second is refused: exit 1, naming the first); feedback a
 *        received signal; anything else is refused (exit 1). It goes to the
 *        answered message's sender, in_reply_to = msg_id.
 *   {"cmd":"dry-run","for":"send"|"reply", and the fields of that request}:
 *        nothing is sealed or stored; every check of the request runs (for a
 *        reply, the message answered; the node may send; the signal against
 *        the directory; the recipients; the policy: keten_outbox_check)
 *        -> {"ok":true,"valid":BOOL,"problems":[{"path","problem","allowed",
 *        "error"}],"more":N}
 *   {"cmd":"inbox"[,"all":true][,"wait_ms":N]}         -> {"ok":true,"messages":[...]}
 *   {"cmd":"show","msg_id":HEX}                        -> {"ok":true,"message":{...}}
 *   {"cmd":"ack","msg_id":HEX}                         -> {"ok":true,"msg_id":HEX}
 *        a message acknowledged before is refused (exit 1): "message HEX was
 *        already acknowledged at T", with "handled_at":T in the reply
 *   {"cmd":"sent"[,"since_ms":N]}  -> {"ok":true,"messages":[STATUS...],"more":N}
 *        the messages this node sent (made at or after since_ms), oldest
 *        first, each as "status" shows it (its state and every recipient's);
 *        the newest KETEN_API_SENT_MAX, "more" older ones left out
 *   {"cmd":"status"[,"msg_id":HEX]}                    -> {"ok":true,"status":{...}}
 *   {"cmd":"checkpoint"}          -> {"ok":true,"checkpoint":{"tree_size","witnessed","note"}}
 *   {"cmd":"checkpoint","all":true} -> {"ok":true,"checkpoints":[{...}...]} (tree-size order,
 *                                  the newest KETEN_WITNESS_EVIDENCE_ALL_MAX)
 * Failures: {"ok":false,"error":"what was wrong and what to do","exit":N}
 * with N the command-line exit code (1 failure, 2 usage, 3 verification).
 *
 * TEXT is the signal JSON (docs/signals.md, keten-node(8)) as text (parsed
 * strictly by the daemon). With "wait", send answers once the broker acknowledged or
 * refused the message (or after timeout_ms, default 30 s); inbox with
 * "wait_ms" answers as soon as there is a message to list, or when the time
 * is up (with an empty list).
 */
#ifndef KETEN_NODE_APIZMQ_H
#define KETEN_NODE_APIZMQ_H

#include "err.h"
#include "keten.h"
#include "node.h"
#include "api.h"


keten_err keten_apizmq_open(keten_node *node, keten_apizmq **out) KETEN_MUST_CHECK;
void keten_apizmq_destroy(keten_apizmq **self_p);

void *keten_apizmq_socket(keten_apizmq *self);

/* Handle waiting requests (call when the socket is readable). */
void keten_apizmq_on_readable(keten_node *node);

/* Answer waiters whose time is up. */
void keten_apizmq_tick(keten_node *node);

/* Group commit (store.h): between keten_apizmq_hold() and keten_apizmq_release()
 * replies are kept in order, because they may tell of changes not yet
 * durable (a send's "pending" answer, a new inbox message). release with
 * committed=true sends them once the batch's commit succeeded; with
 * committed=false each kept reply is replaced by an error answer (exit 1:
 * the node's store could not commit; the request may be tried again). */
void keten_apizmq_hold(keten_apizmq *self);
void keten_apizmq_release(keten_apizmq *self, bool committed);

/* A sent message's state changed / a new message is in the inbox. */
void keten_apizmq_notify_sent(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES]);
/* The broker refused this node (alarm.h): every waiting send is answered
 * with the refusal. */
void keten_apizmq_notify_refused(keten_node *node);
void keten_apizmq_notify_inbox(keten_node *node);

#endif
