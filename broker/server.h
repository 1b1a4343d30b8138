/*
 * server.h - `keten-broker run`: set-up, the main loop, shutdown.
 *
 * Set-up: signals blocked and read through a signalfd (so the libmicrohttpd
 * thread never gets them); the identity (HOME/identity.secret, a broker key
 * with a log key; a key file without a passphrase is logged as a warning at
 * every start and shown as keten_insecure_key 1); the store; the directory
 * (dirstate.h); the ZAP handler bound on inproc://zeromq.zap.01; only then
 * the ROUTER bound as a CURVE server with the identity's transport key,
 * ZMQ_MAXMSGSIZE = KETEN_FRAME_MAX, a bounded ZMQ_SNDHWM, ZMQ_ROUTER_MANDATORY
 * off, libzmq heartbeats (dead peers are closed) and a socket monitor.
 *
 * The loop, single-threaded, wakes at least every 100 ms:
 *   1. signals: SIGTERM/SIGINT stop after this iteration, SIGHUP reloads the
 *      directory file;
 *   2. monitor events (before any frame: connection bookkeeping, conns.h);
 *   3. ZAP requests;
 *   4. up to BROKER_BATCH_MAX frames (without blocking); each frame's
 *      User-Id and admitted key (ZAP's "X-Key") are checked against the
 *      directory in force; frames of nodes no longer current are dropped and
 *      audited (auth-failed, once per connection); submits are verified;
 *   5. one write transaction: node events, the frames in order, notices,
 *      deliveries, expiry, a checkpoint if due; commit (fsync);
 *   6. only then the staged frames (acks, errors, deliveries, ...) are sent.
 * A batch whose transaction fails with a full map is run again with every
 * submit refused (STORE_FULL, audited); if that fails too, or on any other
 * store error, the submits are answered STORE_FULL without being audited
 * and the other frames are dropped (nodes resend after reconnecting); the
 * in-memory delivery state of the failed batch is rolled back.
 *
 * Test hook: with KETEN_BROKER_FAULT=kill-after-commit in the environment
 * the broker kills itself with SIGKILL right after the first commit that
 * accepted a submit, before any ack is sent (fault tests of
 * "kill -9 between commit and ack"). It is logged at start.
 */
#ifndef KETEN_BROKER_SERVER_H
#define KETEN_BROKER_SERVER_H

#include "broker.h"
#include "err.h"

/* Run until SIGTERM/SIGINT; KETEN_OK on a clean stop. */
keten_err server_run(const broker_config *cfg) KETEN_MUST_CHECK;

#endif
