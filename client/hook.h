/*
 * hook.h - the --on-message hook (issue 4, keten-node item 6): for each new
 * inbox message the daemon runs `/bin/sh -c CMD` with the message's JSON
 * (one object as printed by `inbox --json`) on its standard input, read from
 * an anonymous memory file so that the daemon never blocks on a pipe. The
 * child gets a clean environment: PATH=/usr/local/bin:/usr/bin:/bin,
 * KETEN_HOME, KETEN_MSG_ID and nothing of the daemon's (no KETEN_PASSPHRASE,
 * whatever it was started with). Its stdout and stderr are the daemon's.
 * Children are reaped by keten_hook_reap(), which counts failures.
 * At most KETEN_HOOK_MAX_RUNNING run at once; beyond that a hook is skipped
 * with a warning (the message stays in the inbox).
 */
#ifndef KETEN_NODE_HOOK_H
#define KETEN_NODE_HOOK_H

#include <stddef.h>

#include "err.h"
#include "node.h"

#define KETEN_HOOK_MAX_RUNNING 32
/* The hook's kind, named in its log lines (hook=on-message) next to the
 * msg_id it was run for: hook started, hook done, hook failed (with the
 * exit status, or status=-1 and the signal that ended it), hook not run. */
#define KETEN_HOOK_KIND "on-message"

keten_err keten_hook_run(
    keten_node *node, const char *msg_id_hex, const char *json, size_t json_len) KETEN_MUST_CHECK;

/* Reap finished hooks (non-blocking); a failed one is counted and logged
 * with the msg_id it was run for. */
void keten_hook_reap(keten_node *node);

/* How many hooks are running. */
unsigned keten_hook_running(void);

#endif
