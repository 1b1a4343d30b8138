/*
 * status.h - what `keten-node status` shows, built as JSON by the daemon:
 *
 * Node: {node, role, connected, broker, last_connect_error, member,
 *   directory {version, expires_at, fresh, needed_version}, checkpoint
 *   {tree_size (the reference checkpoint), root, directory_version,
 *   witnessed, witnessed_size, last_witness_size}, outbox, alarms [{id, kind,
 *   detail, at, acknowledged, and once acknowledged acknowledged_at,
 *   acknowledged_by, note}] (alarm.h), evidence (frames kept), warnings
 *   [...], counters {...},
 *   store {dir, full, free_bytes, full_since and detail while full}
 *   (store.h, "Full filesystem")}.
 * Message: a sent one {msg_id, direction "sent", kind, category, purpose,
 *   state (pending, accepted = proven in the log, rejected, expired),
 *   created_at, expires_at, leaf_index, tree_size (of the proof),
 *   reason/rule/detail when refused, recipients [{id, state (pending,
 *   accepted, receipted, refused, expired, rejected), receipted_at
 *   (receipted: the batch head's stored_at), reason (refused, rejected),
 *   receipt_leaf, replied}], replies [{msg_id,
 *   from, received_at}]}; a received one {msg_id, direction "received",
 *   from, kind, received_at, handled, leaf_index}. Both carry "alarms" (the
 *   number of the node's alarms not acknowledged) and "alarms_acknowledged".
 */
#ifndef KETEN_NODE_STATUS_H
#define KETEN_NODE_STATUS_H

#include <jansson.h>

#include "err.h"
#include "keten.h"
#include "node.h"

keten_err keten_status_node(keten_node *node, json_t **out) KETEN_MUST_CHECK;
keten_err keten_status_message(keten_node *node, const uint8_t msg_id[static KETEN_MSG_ID_BYTES],
    json_t **out) KETEN_MUST_CHECK;
/* The same without the node's "alarms" and "alarms_acknowledged": one
 * message's record, as each entry of a listing gives it. */
keten_err keten_status_message_record(keten_node *node,
    const uint8_t msg_id[static KETEN_MSG_ID_BYTES], json_t **out) KETEN_MUST_CHECK;

#endif
