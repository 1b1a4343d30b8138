/*
 * passphrase.h - where a passphrase comes from (docs/protocol.md section 2.1):
 *   1. --passphrase-file FILE (held to the secret-file permission rules),
 *   2. the environment variable KETEN_PASSPHRASE, which is removed from the
 *      environment and wiped once read,
 *   3. a prompt on the controlling terminal without echo, when one exists.
 * With none of these: KETEN_ERR_NEED_PASSPHRASE and a detail line saying what
 * to do.
 *
 * On a terminal a person gets KETEN_PASSPHRASE_TRIES rounds: a new
 * passphrase whose two entries differ (or that is empty, or too weak) is
 * asked again, and keten_passphrase_try() asks again after a wrong one. A
 * file or KETEN_PASSPHRASE is read once: a script gets one answer, at once.
 * What went wrong in a round is written to the terminal, never the
 * passphrase.
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
/* Rounds on a terminal (mismatch, wrong passphrase). */
#define KETEN_PASSPHRASE_TRIES 3
/* The strength rule for passphrases of new administrator keys: at least
 * this many words, or at least this many characters. */
#define KETEN_PASSPHRASE_MIN_WORDS 5
#define KETEN_PASSPHRASE_MIN_CHARS 20

/* file may be NULL. prompt is the text shown on a terminal. With confirm
 * (a new passphrase), the terminal asks twice; after a mismatch it asks
 * again, KETEN_PASSPHRASE_TRIES rounds in all, then KETEN_ERR_INVALID. */
keten_err keten_passphrase_get(const char *file, const char *prompt, bool confirm, char **out,
    size_t *out_len) KETEN_MUST_CHECK;

/* A new passphrase, as keten_passphrase_get() with confirm. With strong it
 * must also pass keten_passphrase_check_strength(): on a terminal a weak one
 * is explained and asked again (it uses up a round); from a file or the
 * environment it is KETEN_ERR_INVALID with the rule in the detail. */
keten_err keten_passphrase_get_new(const char *file, const char *prompt, bool strong, char **out,
    size_t *out_len) KETEN_MUST_CHECK;

/* KETEN_OK when the passphrase (len bytes) has at least
 * KETEN_PASSPHRASE_MIN_WORDS words (runs of characters other than space and
 * tab) or KETEN_PASSPHRASE_MIN_CHARS characters (UTF-8 characters, not
 * bytes); otherwise KETEN_ERR_INVALID with a detail that states the rule
 * and what this one has. */
keten_err keten_passphrase_check_strength(const char *pass, size_t len) KETEN_MUST_CHECK;

/* Open something with a passphrase: get one (as keten_passphrase_get(),
 * without confirm) and call try_fn(pass, len, arg). When try_fn returns
 * KETEN_ERR_PASSPHRASE and the passphrase was typed on the terminal, the
 * terminal says so and asks again, KETEN_PASSPHRASE_TRIES times in all.
 * Returns what the last call of try_fn returned (its detail kept), or why no
 * passphrase could be had. The passphrase is wiped after each call; try_fn
 * must not keep it. */
typedef keten_err (*keten_passphrase_try_fn)(const char *pass, size_t len, void *arg);
keten_err keten_passphrase_try(const char *file, const char *prompt, keten_passphrase_try_fn try_fn,
    void *arg) KETEN_MUST_CHECK;

/* Wipe and free; accepts NULL; sets *pass_p = NULL. */
void keten_passphrase_free(char **pass_p);

/* Remove KETEN_PASSPHRASE from the environment, wiping its value; daemons call
 * this at start so that hooks and children never inherit it. */
void keten_passphrase_scrub_env(void);

#endif
