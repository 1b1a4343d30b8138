/*
 * passphrase.h - where a passphrase comes from (docs/protocol.md section 2.1):
 *   1. --passphrase-file FILE (held to the secret-file permission rules),
 *   2. the environment variable KETEN_PASSPHRASE, which is removed from the
 *      environment and wiped once read,
 *   3. a prompt on the controlling terminal without echo, when one exists.
 * With none of these: KETEN_ERR_NEED_PASSPHRASE and a detail line saying what
 * to do.
 *
 * The passphrase is returned in sodium_malloc() memory, NUL-terminated, a
 * trailing newline removed; free it with keten_passphrase_free().
 * An empty passphrase is refused (KETEN_ERR_INVALID).
 * Not thread-safe (environment and terminal).
 */
#ifndef KETEN_PASSPHRASE_H
#define KETEN_PASSPHRASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KETEN_PASSPHRASE_MAX 1024

/* file may be NULL. prompt is the text shown on a terminal. With confirm,
 * the terminal prompt asks twice and refuses a mismatch. */
keten_err keten_passphrase_get(const char *file, const char *prompt, bool confirm, char **out,
    size_t *out_len) KETEN_MUST_CHECK;

/* Wipe and free; accepts NULL; sets *pass_p = NULL. */
void keten_passphrase_free(char **pass_p);

/* Remove KETEN_PASSPHRASE from the environment, wiping its value; daemons call
 * this at start so that hooks and children never inherit it. */
void keten_passphrase_scrub_env(void);

#endif
