/*
 * daemon.h - `keten-node run`: the node daemon's life (issue 4, keten-node
 * items 1-6; docs/wire.md).
 *
 * Start: take the lock HOME/node.lock (one daemon per home), open the
 * identity (passphrase as for every daemon; KETEN_PASSPHRASE is scrubbed
 * from the environment), the anchor, the store, the directories (dirs.h),
 * connect the broker link (link.h) with the broker certificate's
 * transport_pk, bind the local API (api.h).
 *
 * Main loop (one thread, zmq_poll): the broker socket, the link monitor, the
 * API socket and a signalfd. On every (re)connection: Hello{reference
 * checkpoint size} first, then Credit (window 64), DirectoryRequest{
 * after_version = installed}, the outbox resent. Timers every 200 ms:
 * resend, witness checks, directory fail-closed check, API waiters, hook
 * children, and hourly the replay memory purge. SIGTERM and SIGINT end the
 * loop cleanly (return KETEN_OK: exit 0). SIGHUP reads the --directory file
 * again and installs it if it verifies and is newer (dirs.h); otherwise the
 * node logs why and goes on with the version it has.
 *
 * Under systemd (notify.h): READY=1 once the store is open, the API socket
 * bound and the broker link set up (not connected: a node starts while the
 * broker is down); RELOADING=1 and READY=1 around a SIGHUP reload; STOPPING=1
 * at SIGTERM/SIGINT; WATCHDOG=1 from the loop, which wakes every 200 ms.
 */
#ifndef KETEN_NODE_DAEMON_H
#define KETEN_NODE_DAEMON_H

#include <stdbool.h>

#include "err.h"
#include "node.h"

/* Run until stopped. *running is set once the daemon has started (READY=1):
 * an error before that is a failure to start (keten_cli_start_error()). */
keten_err keten_daemon_run(const keten_node_opts *opts, bool *running) KETEN_MUST_CHECK;

#endif
