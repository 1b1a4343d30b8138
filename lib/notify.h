/*
 * notify.h - telling the service manager how a daemon is doing, with the
 * sd_notify(3) protocol of systemd (the units in etc/systemd are
 * Type=notify with WatchdogSec=):
 *
 *   READY=1      start-up is complete (or a reload is over) and the daemon
 *                serves; with a STATUS= line saying what it serves
 *   RELOADING=1  a reload (SIGHUP) has begun; READY=1 follows when it ends
 *   STOPPING=1   a shutdown (SIGTERM, SIGINT) has begun
 *   STATUS=...   a one-line status shown by `systemctl status`
 *   WATCHDOG=1   the main loop is alive (keten_notify_watchdog_tick)
 *
 * Without $NOTIFY_SOCKET (not started by systemd, or by a unit that is not
 * Type=notify) every function is a no-op that costs one branch. The
 * watchdog is on only when $WATCHDOG_USEC is set and $WATCHDOG_PID, if
 * set, is this process (sd_watchdog_enabled(3)); both are read once, at the
 * first call.
 *
 * Nothing here fails: a message that cannot be sent is dropped, and the
 * first such failure is logged at debug level (never again after it). A
 * daemon never stops because systemd is not listening.
 *
 * Status texts are copied into the message with every newline replaced by
 * a space (one message, one line per field) and cut at KETEN_NOTIFY_STATUS_MAX
 * bytes. Never put a secret or signal content in them: `systemctl status`
 * shows them to every user.
 *
 * Thread safety: none. Call these from one thread, the daemon's main loop.
 * Built without libsystemd (the meson dependency not found) the module is
 * a no-op.
 */
#ifndef KETEN_NOTIFY_H
#define KETEN_NOTIFY_H

#include <stdint.h>

#include "err.h"

#define KETEN_NOTIFY_STATUS_MAX 256

/* READY=1, with STATUS=status when status is not NULL. */
void keten_notify_ready(const char *status);

/* RELOADING=1 (with MONOTONIC_USEC=, as newer systemd versions expect). */
void keten_notify_reloading(void);

/* STOPPING=1. */
void keten_notify_stopping(void);

/* STATUS= with a printf-formatted text. */
void keten_notify_status(const char *fmt, ...) KETEN_PRINTF(1, 2);

/* WATCHDOG=1 if the watchdog is on and half of its interval has passed
 * since the last one (the first call always sends). mono_ms is
 * keten_mono_ms(). Cheap enough to call on every round of a main loop, which
 * must then come round more often than half the interval. */
void keten_notify_watchdog_tick(uint64_t mono_ms);

#endif
