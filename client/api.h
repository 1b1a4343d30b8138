/*
 * api.h - the node's local API, for the command line and for partner
 * applications: a ZeroMQ ROUTER socket bound on ipc://HOME/api.sock,
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
 *   {"cmd":"ack","msg_id":HEX}                         -> {"ok":true}
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
#ifndef KETEN_NODE_API_H
#define KETEN_NODE_API_H

#include "err.h"
#include "keten.h"
#include "node.h"

#define KETEN_API_REQUEST_MAX (2u << 20)
#define KETEN_API_WAIT_DEFAULT_MS 30000
#define KETEN_API_WAIT_MAX_MS (24 * 3600 * 1000)
#define KETEN_API_WAITERS_MAX 1024

keten_err keten_api_open(keten_node *node, keten_api **out) KETEN_MUST_CHECK;
void keten_api_destroy(keten_api **self_p);

void *keten_api_socket(keten_api *self);

/* Handle waiting requests (call when the socket is readable). */
void keten_api_on_readable(keten_node *node);

/* Answer waiters whose time is up. */
void keten_api_tick(keten_node *node);

/* Group commit (store.h): between keten_api_hold() and keten_api_release()
 * replies are kept in order, because they may tell of changes not yet
 * durable (a send's "pending" answer, a new inbox message). release with
 * committed=true sends them once the batch's commit succeeded; with
 * committed=false each kept reply is replaced by an error answer (exit 1:
 * the node's store could not commit; the request may be tried again). */
void keten_api_hold(keten_api *self);
void keten_api_release(keten_api *self, bool committed);

/* A sent message's state changed / a new message is in the inbox. */
void keten_api_notify_sent(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES]);
/* The broker refused this node (alarm.h): every waiting send is answered
 * with the refusal. */
void keten_api_notify_refused(keten_node *node);
void keten_api_notify_inbox(keten_node *node);

#endif
