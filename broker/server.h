/*
 * server.h - `keten-broker run`: set-up, the main loop, shutdown.
 *
 * Set-up: signals blocked and read through a signalfd (so the libmicrohttpd
 * thread never gets them); the identity (HOME/identity.secret, a broker key
 * with a log key; a key file without a passphrase is logged as a warning at
 * every start and shown as keten_insecure_key 1); the store; the directory
 * (dirstate.h); the ZAP handler bound on inproc://zeromq.zap.01; only then
 * the ROUTER bound as a CURVE server with the identity's transport key,
 * ZMQ_MAXMSGSIZE = KETEN_FRAME_MAX + KETEN_CURVE_OVERHEAD, a bounded ZMQ_SNDHWM,
 * ZMQ_ROUTER_MANDATORY off, libzmq heartbeats (dead peers are closed) and a socket monitor.
 *
 * The loop wakes at least every 100 ms. The LMDB writer is its one thread;
 * the CPU-heavy, stateless work runs on a pool of verifier threads (pool.h,
 * one per CPU; KETEN_BROKER_VERIFY_THREADS=N in the environment overrides
 * it, 0: none, for benchmarks). A batch of 64 frames or more is applied
 * in one round and committed in the next, so that its commit's fsync
 * overlaps the verification of the next frames; a smaller one is committed
 * in the round that applied it (step 7). One round:
 *   1. signals (SIGTERM/SIGINT: one last round, then stop; SIGHUP: reload
 *      the directory at step 5), monitor events (connection bookkeeping,
 *      conns.h), ZAP requests;
 *   2. up to BROKER_BATCH_MAX frames (without blocking); each frame's
 *      User-Id and admitted key (ZAP's "X-Key") are checked against the
 *      directory in force; frames of nodes no longer current are dropped
 *      and audited (auth-failed, once per connection); every frame's
 *      User-Id and key are compared with the peer its routing id was bound
 *      to (conns_same_peer()): a frame of another peer is dropped and
 *      audited (auth-failed, naming the frame's User-Id);
 *   3. the pool verifies the envelopes and receipts just read (submit.h,
 *      deliver.h), while the main thread commits the pending batch (applied
 *      last round; fsync);
 *   4. only after that commit are the pending batch's staged frames (acks,
 *      errors, deliveries, ...) sent;
 *   5. with no transaction open: the directory reload, the store's room;
 *   6. the frames just read are applied in a new write transaction (batch.h): node
 *      events, the frames in order, notices, deliveries, expiry, a
 *      checkpoint if due; it stays open as the pending batch (a batch
 *      without frames is committed at once);
 *   7. a pending batch of fewer than 64 frames is committed now and its
 *      staged frames sent, as in steps 3-4 (with nothing to verify).
 * A batch whose transaction fails with a full map is run again at once
 * with every submit refused (STORE_FULL, audited); if that fails too, or on
 * any other store error, the submits are answered STORE_FULL without being
 * audited and the other frames are dropped (nodes resend after
 * reconnecting); the in-memory delivery state of the failed batch is rolled
 * back.
 *
 * Under systemd (notify.h): READY=1 once the store is open and the ZAP
 * handler, the ROUTER socket (and the metrics server, if any) are bound,
 * with the directory version as STATUS=; RELOADING=1 before and READY=1
 * after a SIGHUP reload; STOPPING=1 at the first SIGTERM/SIGINT; WATCHDOG=1
 * from every round of the loop.
 *
 * Test hook: with KETEN_BROKER_FAULT=kill-after-commit in the environment
 * the broker kills itself with SIGKILL right after the first commit that
 * accepted a submit, before any ack is sent (fault tests of
 * "kill -9 between commit and ack"); with KETEN_BROKER_FAULT=kill-after-notice,
 * right after the first commit of a batch that staged a notice (a forwarded
 * receipt or an expiry notice), before it is sent. It is logged at start.
 * KETEN_BROKER_TEST_CLOCK_OFFSET_MS=N shifts the broker's clock by N ms.
 * Both exist only in a build with -Dtest_hooks=true (lib/cli.h).
 */
#ifndef KETEN_BROKER_SERVER_H
#define KETEN_BROKER_SERVER_H

#include "broker.h"
#include "err.h"

/* Run until SIGTERM/SIGINT; KETEN_OK on a clean stop. */
keten_err server_run(const broker_config *cfg) KETEN_MUST_CHECK;

#endif
