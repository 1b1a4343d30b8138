/*
 * conns.h - the broker's table of live node connections.
 *
 * A connection is one ROUTER routing id, named by the node id ZAP gave it
 * (User-Id). It is made at the node's first frame ("node-connected") and
 * goes away when the node connects again under a new routing id, or when
 * the socket monitor reports that its file descriptor was disconnected
 * ("node-disconnected"). To map a monitor event to a connection, every
 * accepted file descriptor gets a session number (ACCEPTED event) and a
 * connection remembers the session of the descriptor its frames came from
 * (ZMQ_SRCFD); the main loop reads all monitor events before any frame, so
 * a reused descriptor is never mistaken for the old connection.
 *
 * Replacement: sessions only grow, so they also say which of two
 * connections of one node is the newer. A node that lost its connection
 * (a broker paused past the heartbeat time-out) connects again while
 * frames it sent on the old one may still wait to be read, and the broker
 * then reads frames of both, interleaved. Only a frame of a newer
 * connection replaces the node's connection: the ROUTER's routing ids say
 * which is newer (conns_rid_order), else the sessions (conns_newer); a
 * frame of the older one is stale and dropped. (The sessions alone were
 * not enough: a frame still queued from a closed connection carries the
 * descriptor number it came from, which a newer connection may have been
 * given since, so the dead connection could take the live one's place and
 * the live one's frames were dropped for good.) Replacing on every frame instead made the
 * two connections replace each other back and forth, and the last one made
 * was new, without the Hello its node had sent once: every later submit
 * was refused "send Hello first" while the node waited for acks.
 * A frame still queued from a connection the monitor has reported closed,
 * of a node no longer current with no connection left in the table, is
 * dropped too (conns_from_closed): it used to make a connection of its own,
 * which was cut off, and audited, a second time. Such a frame of a current
 * node still makes a connection: a receipt batch or a cosignature sent just
 * before the node closed its socket is taken as before.
 *
 * Hello: a node's first frame on a connection names the tree size of the
 * checkpoint it holds. Until a Hello is accepted (`hello`), the connection
 * gets no checkpoint and no frame carrying a proof (acknowledgements,
 * deliveries, notices); its submits are refused (batch.h). A later Hello on the connection asks for
 * its deliveries in flight again (deliver_hello()). `cp_sent` is the tree size of the last
 * checkpoint the connection was sent (from Hello at first): the next CheckpointFrame carries a
 * consistency proof from it (checkpointer.h).
 *
 * Per connection: the credit (deliveries the node can still take), the
 * delivery cursor (last queue entry handed out on this connection: on a new
 * connection delivery starts again at the oldest entry), flags, and what is
 * in flight on it (conn_flight: the bytes of the deliveries handed out and
 * not yet receipted, and the notices sent and not yet confirmed, with when
 * each was last sent). A new connection starts with nothing in flight, so
 * it gets every unconfirmed notice again. deliver.h says how they are used.
 *
 * Ownership: the table owns its connections; a conn pointer is valid until
 * conns_remove() or conns_destroy(). Single-threaded (main loop).
 */
#ifndef KETEN_BROKER_CONNS_H
#define KETEN_BROKER_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keten.h"

#define CONN_RID_MAX 255
/* Notices sent and not yet confirmed, at most, per connection. A sender
 * confirms a notice one round trip after it was sent, and under load that
 * round trip includes the broker's queue of incoming frames (~0.2 s at the
 * maximum rate here): 512 in flight keep forwarded receipts flowing at
 * thousands per second per sender. */
#define CONN_NOTICES_IN_FLIGHT 512

/* Answers to a node's requests (ProofResponse, DirectoryPush to a
 * DirectoryRequest) carry up to KETEN_FRAME_MAX bytes each for a request
 * of a few bytes, and libzmq keeps up to BROKER_SNDHWM frames per peer
 * that does not read them (until its heartbeat times out): 1,000 answers
 * of 16 MiB. So their bytes are budgeted per node, across its connections
 * (a new connection does not start afresh): a token bucket of
 * CONN_ANSWER_BYTES_BURST bytes (two of the largest answers) that fills
 * again at CONN_ANSWER_BYTES_PER_S. keten-node asks for little (the
 * directory versions after its own) and never comes near it. */
#define CONN_ANSWER_BYTES_BURST (2ull * KETEN_FRAME_MAX)
#define CONN_ANSWER_BYTES_PER_S (1ull << 20)

/* What the broker keeps of a node across its connections: its answer
 * budget (conns_answer_take) and the routing id of its last connection that
 * ended (conns_closed, conns_from_closed). */
typedef struct conn_peer {
    char node[KETEN_NAME_MAX + 1];
    uint64_t bytes; /* what may go now */
    uint64_t at_ms; /* when `bytes` was last brought up to date (monotonic ms) */
    bool has_closed; /* closed_rid is set */
    uint32_t closed_rid; /* the counter of its last ended connection's routing id */
    uint64_t closed_frames; /* frames of ended connections dropped since */
} conn_peer;

/* A notice sent on a connection and not yet confirmed. */
typedef struct conn_notice {
    uint64_t leaf; /* its key in `notices`: the leaf of its audit record */
    uint64_t sent_ms; /* when it was last sent (monotonic ms) */
} conn_notice;

/* What is in flight on a connection beyond its credit; plain data, copied
 * whole when a batch's effects on memory may have to be undone (the list of
 * notices in flight is not copied: a failed batch forgets it, so that every
 * unconfirmed notice is sent again). */
typedef struct conn_flight {
    uint64_t bytes; /* envelope bytes of deliveries not yet receipted or expired */
    bool full; /* the next delivery would exceed the byte budget */
    /* Resending what is not receipted (deliver.h): when deliveries were
     * last seen to progress (a receipt, or the first delivery handed out
     * with nothing in flight; monotonic ms), the wait before the next
     * rewind (0: DELIVER_RESEND_MS), the deliveries in flight, and the
     * credit the node returned in Credit frames since the first of them. */
    uint64_t progress_ms;
    uint64_t resend_wait_ms;
    uint64_t count;
    uint64_t returned;
    uint32_t rewinds; /* rewinds since the last receipt: each halves the byte budget */
    uint64_t rewound_ms; /* when it was last rewound (monotonic ms; 0: never) */
    bool rewind_due; /* a Hello asked for a rewind sooner than DELIVER_RESEND_MS after the last */
    bool has_notice_cursor;
    uint64_t notice_cursor; /* leaf of the last notice first sent here */
    size_t n_notices; /* entries of conn.notice_v in use */
} conn_flight;

typedef struct conn {
    uint8_t rid[CONN_RID_MAX];
    size_t rid_len;
    char node[KETEN_NAME_MAX + 1];
    uint8_t key[KETEN_CURVE_KEY_BYTES]; /* transport key ZAP admitted */
    uint64_t session; /* fd session (0: unknown) */
    uint32_t credit;
    bool has_cursor;
    uint64_t cursor; /* leaf of the last queue entry delivered */
    bool more; /* the queue may hold entries after the cursor */
    bool notices; /* notices may be waiting */
    bool revoked; /* no longer current (revoked, keys replaced): nothing more for it */
    Keten__Reason refused; /* why (dirstate_cut_off), told on every later frame */
    uint64_t refused_version; /* the directory version that made it so */
    bool hello; /* a Hello was accepted: checkpoints and proofs may go */
    bool want_cp; /* Hello in this batch: send the batch's checkpoint if cp_sent differs */
    bool cp_staged; /* this batch's checkpoints were staged (checkpointer_commit only) */
    uint64_t cp_sent; /* tree size of the last checkpoint sent (or named by Hello) */
    /* The largest tree size sent to it or named by one of its Hellos on this
     * connection: the node may hold a reference that large, even after a
     * later Hello named less (an earlier Hello, still on its way when the
     * node took a larger checkpoint). */
    uint64_t cp_max;
    uint64_t connected_at;
    uint64_t stale_frames; /* frames of a connection it replaced, dropped */
    conn_flight flight;
    /* The notices in flight: CONN_NOTICES_IN_FLIGHT entries, allocated when
     * the connection is first sent one (most never are). */
    conn_notice *notice_v;
} conn;

typedef struct conns {
    conn **v;
    size_t n, cap;
    uint64_t *fd_session; /* per file descriptor, the session of its connection */
    size_t n_fd;
    uint64_t next_session;
    /* Per node that asked or whose connection ended (at most one per node
     * the directory ever listed: ZAP admits no other). */
    conn_peer *peers;
    size_t n_peers, cap_peers;
} conns;

conns *conns_new(void);
void conns_destroy(conns **self_p);

conn *conns_find_rid(const conns *self, const uint8_t *rid, size_t len);
conn *conns_find_node(const conns *self, const char *node);

/* A new connection (not yet in any other table). */
keten_err conns_add(conns *self, const uint8_t *rid, size_t len, const char *node,
    const uint8_t key[static KETEN_CURVE_KEY_BYTES], int fd, uint64_t now,
    conn **out) KETEN_MUST_CHECK;
void conns_remove(conns *self, conn *c);

/* Whether a frame that came in under c's routing id was authenticated as
 * c's peer: its "User-Id" (the node ZAP named) equals c->node and its
 * "X-Key" (the CurveZMQ client key ZAP admitted, 64 hex characters) equals
 * c->key. Checked on every frame, not only the first of a connection: the
 * routing id is libzmq's bookkeeping, the metadata is the authentication.
 * NULL or malformed metadata never matches. */
bool conns_same_peer(const conn *c, const char *user_id, const char *keyhex);

/* The session of fd's current connection (0: none known: never accepted,
 * not tracked, or disconnected since). */
uint64_t conns_fd_session(const conns *self, int fd);

/* Whether a frame that came under a routing id the table does not know,
 * for a node whose connection is old, comes from a newer connection of that
 * node, which then replaces old: the session of its descriptor (new_session)
 * is later than old's, or old's is not known. A frame from an earlier
 * session, or from a descriptor already disconnected (0), is stale. The
 * same session under another routing id means old was made from a frame of
 * a closed connection whose descriptor the newer one reuses: then the
 * frame's being a Hello (hello) decides, as a connection starts with one. */
bool conns_newer(const conn *old, uint64_t new_session, bool hello);

/* Which of two connections libzmq accepted later, by their routing ids:
 * the ROUTER names a peer that sets none with 5 bytes, a zero and a 32-bit
 * counter (big-endian) that grows with every connection it accepts, so the
 * later one has the larger counter (compared modulo 2^32). 1: rid is of a
 * later connection than old's; -1: of an earlier one; 0: not both such
 * routing ids (then conns_newer() decides). This does not depend on when
 * the monitor's events are read, nor on ZMQ_SRCFD, which for a frame still
 * queued from a closed connection can name a descriptor reused since. */
int conns_rid_order(const conn *old, const uint8_t *rid, size_t len);

/* A connection of c->node ended (closed, replaced, or cut off and then
 * closed): remember its routing id, before conns_remove(c). */
keten_err conns_closed(conns *self, const conn *c) KETEN_MUST_CHECK;

/* Whether a frame that came under a routing id the table does not know,
 * for a node with no connection in the table, was sent on a connection of
 * that node that has ended: its routing id is the ended one's, or of a
 * connection the ROUTER accepted before it (conns_rid_order's counters).
 * libzmq hands out frames still queued from a closed connection after the
 * monitor has told that it closed; taken for a new connection, such a frame
 * would make one (and a refused node's would be cut off and audited
 * again). False when either routing id is not the ROUTER's own. *dropped:
 * such frames of the node counted since its connection ended, this one
 * included. */
bool conns_from_closed(
    conns *self, const char *node, const uint8_t *rid, size_t len, uint64_t *dropped);

/* Whether an answer of `bytes` may go to node now (monotonic ms now): if
 * so (*ok) it is taken from the node's budget; if not, nothing is taken
 * and *wait_ms says when it could go. KETEN_ERR_NOMEM only. */
keten_err conns_answer_take(conns *self, const char *node, uint64_t bytes, uint64_t now_ms,
    bool *ok, uint64_t *wait_ms) KETEN_MUST_CHECK;

/* Monitor events. */
void conns_fd_accepted(conns *self, int fd);
/* The connection of fd's current session, or NULL. */
conn *conns_fd_disconnected(conns *self, int fd);

#endif
