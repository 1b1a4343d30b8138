/* Ending a ZeroMQ context without hanging.
 *
 * zmq_ctx_term() waits until every socket of the context has been taken
 * down by libzmq's reaper thread. With CurveZMQ and a ZAP handler, libzmq
 * 4.3 can wait forever when a handshake was in progress as the sockets
 * closed (libzmq issue 2733, seen on loaded machines), even with
 * ZMQ_LINGER 0. A daemon that hangs on SIGTERM is worse than one that
 * leaves a dead context behind at exit: keten_zctx_term() waits at most
 * timeout_ms for the context to end, and otherwise logs it and returns,
 * leaving the context (and libzmq's threads) to the process's exit.
 *
 * Call it only after everything that must be durable is (stores are
 * committed), and after every socket of the context is closed.
 */
#ifndef KETEN_ZCTX_H
#define KETEN_ZCTX_H

#include <stdbool.h>

#define KETEN_ZCTX_TERM_MS 2000u

/* End *ctx (NULL: nothing to do) within timeout_ms; *ctx becomes NULL.
 * Returns false if the context did not end in time (it is then left
 * running; see above). */
bool keten_zctx_term(void **ctx, unsigned timeout_ms);

#endif
