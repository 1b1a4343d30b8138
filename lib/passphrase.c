#include "passphrase.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

#define PASSPHRASE_ENV "KETEN_PASSPHRASE"
#define TTY_PATH "/dev/tty"
/* Room for a copy of an error detail line (err.c keeps 512 bytes). */
#define DETAIL_COPY_MAX 512

static keten_err ensure_sodium(void)
{
    if (sodium_init() < 0) {
        return keten_err_set(KETEN_ERR_CRYPTO, "libsodium could not be initialised");
    }
    return KETEN_OK;
}

void keten_passphrase_free(char **pass_p)
{
    if (pass_p == NULL || *pass_p == NULL) {
        return;
    }
    /* Every passphrase buffer is KETEN_PASSPHRASE_MAX + 1 bytes. */
    sodium_memzero(*pass_p, KETEN_PASSPHRASE_MAX + 1);
    sodium_free(*pass_p);
    *pass_p = NULL;
}

void keten_passphrase_scrub_env(void)
{
    char *v = getenv(PASSPHRASE_ENV);
    if (v != NULL) {
        sodium_memzero(v, strlen(v));
    }
    unsetenv(PASSPHRASE_ENV);
}

/* A fresh, zeroed passphrase buffer of KETEN_PASSPHRASE_MAX + 1 bytes. */
static char *pass_alloc(void)
{
    char *p = sodium_malloc(KETEN_PASSPHRASE_MAX + 1);
    if (p != NULL) {
        memset(p, 0, KETEN_PASSPHRASE_MAX + 1);
    }
    return p;
}

/* Remove one trailing "\n" or "\r\n", wiping it. */
static size_t strip_newline(char *p, size_t len)
{
    if (len > 0 && p[len - 1] == '\n') {
        p[--len] = '\0';
        if (len > 0 && p[len - 1] == '\r') {
            p[--len] = '\0';
        }
    }
    return len;
}

/* The final checks every source shares: not empty, no NUL inside. */
static keten_err check_pass(const char *p, size_t len, const char *where)
{
    if (len == 0) {
        return keten_err_set(KETEN_ERR_INVALID, "the passphrase from %s is empty; set one", where);
    }
    if (memchr(p, '\0', len) != NULL) {
        return keten_err_set(KETEN_ERR_INVALID,
            "the passphrase from %s contains a NUL byte; use a text passphrase", where);
    }
    return KETEN_OK;
}

static keten_err from_file(const char *file, char **out, size_t *out_len)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    keten_err e = keten_file_read_secret(file, KETEN_PASSPHRASE_MAX, &raw, &raw_len);
    if (e != KETEN_OK) {
        return e;
    }
    char *p = pass_alloc();
    if (p == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the passphrase from %s", file);
        goto out;
    }
    memcpy(p, raw, raw_len);
    size_t len = strip_newline(p, raw_len);
    e = check_pass(p, len, file);
    if (e != KETEN_OK) {
        keten_passphrase_free(&p);
        goto out;
    }
    *out = p;
    *out_len = len;
out:
    sodium_memzero(raw, raw_len);
    sodium_free(raw);
    return e;
}

static keten_err from_env(char *v, char **out, size_t *out_len)
{
    size_t len = strlen(v);
    keten_err e = KETEN_OK;
    char *p = NULL;
    if (len > KETEN_PASSPHRASE_MAX) {
        e = keten_err_set(KETEN_ERR_TOO_LARGE, "%s is %zu bytes; at most %d allowed",
            PASSPHRASE_ENV, len, KETEN_PASSPHRASE_MAX);
        goto out;
    }
    p = pass_alloc();
    if (p == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the passphrase");
        goto out;
    }
    memcpy(p, v, len);
    len = strip_newline(p, len);
    e = check_pass(p, len, PASSPHRASE_ENV);
    if (e != KETEN_OK) {
        keten_passphrase_free(&p);
        goto out;
    }
    *out = p;
    *out_len = len;
out:
    /* Wiped and gone whatever happened, so that children never see it. */
    sodium_memzero(v, strlen(v));
    unsetenv(PASSPHRASE_ENV);
    return e;
}

static keten_err tty_write(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return keten_err_set(KETEN_ERR_IO, "cannot write to the terminal: %s", strerror(errno));
        }
        s += n;
        len -= (size_t)n;
    }
    return KETEN_OK;
}

/* One line from the terminal into p (KETEN_PASSPHRASE_MAX + 1 bytes). */
static keten_err tty_read_line(int fd, char *p, size_t *out_len)
{
    size_t len = 0;
    bool too_long = false;
    char c = 0; /* one byte of the passphrase at a time: wiped below */
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            sodium_memzero(&c, sizeof c);
            return keten_err_set(
                KETEN_ERR_IO, "cannot read the passphrase from the terminal: %s", strerror(errno));
        }
        if (n == 0 || c == '\n') {
            break;
        }
        if (len < KETEN_PASSPHRASE_MAX) {
            p[len++] = c;
        } else {
            too_long = true; /* read on to the end of the line, keep nothing */
        }
    }
    sodium_memzero(&c, sizeof c);
    if (len > 0 && p[len - 1] == '\r') {
        p[--len] = '\0';
    }
    if (too_long) {
        return keten_err_set(
            KETEN_ERR_TOO_LARGE, "the passphrase is longer than %d bytes", KETEN_PASSPHRASE_MAX);
    }
    p[len] = '\0';
    *out_len = len;
    return KETEN_OK;
}

/* Prompt, read with echo off, print the newline the user does not see. */
static keten_err tty_ask(int fd, const char *prompt, char *p, size_t *len)
{
    keten_err e = tty_write(fd, prompt);
    if (e == KETEN_OK) {
        e = tty_read_line(fd, p, len);
    }
    keten_err e2 = tty_write(fd, "\n");
    return e != KETEN_OK ? e : e2;
}

/* Echo off (and canonical input on) for the life of a prompt; restore puts
 * back what was there. */
static keten_err echo_off(int fd, struct termios *saved)
{
    if (tcgetattr(fd, saved) != 0) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot read the terminal settings: %s", strerror(errno));
    }
    struct termios quiet = *saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    quiet.c_lflag |= ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        return keten_err_set(KETEN_ERR_IO, "cannot turn terminal echo off: %s", strerror(errno));
    }
    return KETEN_OK;
}

static void echo_restore(int fd, const struct termios *saved)
{
    /* Retry if a signal cuts in. */
    while (tcsetattr(fd, TCSAFLUSH, saved) != 0 && errno == EINTR) { }
}

/* One passphrase typed once, echo off, into a fresh buffer *out. */
static keten_err tty_once(int fd, const char *prompt, char **out, size_t *out_len)
{
    struct termios saved;
    char *p = NULL;
    size_t len = 0;
    keten_err e = echo_off(fd, &saved);
    if (e != KETEN_OK) {
        return e;
    }
    p = pass_alloc();
    if (p == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the passphrase");
        goto out;
    }
    if ((e = tty_ask(fd, prompt, p, &len)) != KETEN_OK) {
        goto out;
    }
    *out = p;
    *out_len = len;
    p = NULL;
out:
    echo_restore(fd, &saved);
    keten_passphrase_free(&p);
    return e;
}

/* Tell the person at the terminal what was wrong; the detail of the last
 * keten_err_set() is the text. */
static void tty_complain(int fd, const char *what_next)
{
    (void)tty_write(fd, keten_err_detail());
    (void)tty_write(fd, what_next);
}

/* A passphrase from the terminal. An empty one (or, with strong, a weak
 * one) is said and asked again; with confirm (a new passphrase) it is typed
 * twice and a mismatch is asked again too: KETEN_PASSPHRASE_TRIES rounds in
 * all. */
static keten_err from_tty(
    int fd, const char *prompt, bool confirm, bool strong, char **out, size_t *out_len)
{
    char *p = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    keten_err e = KETEN_OK;
    const char *first = prompt != NULL ? prompt : "Passphrase: ";
    for (int round = 1; round <= KETEN_PASSPHRASE_TRIES; round++) {
        bool last = round == KETEN_PASSPHRASE_TRIES;
        keten_passphrase_free(&p);
        keten_passphrase_free(&again);
        if ((e = tty_once(fd, first, &p, &len)) != KETEN_OK) {
            break; /* the terminal itself failed: asking again will not help */
        }
        e = check_pass(p, len, "the terminal");
        if (e == KETEN_OK && strong) {
            e = keten_passphrase_check_strength(p, len);
        }
        if (e != KETEN_OK) {
            if (last) {
                break;
            }
            tty_complain(fd, "\nTry again.\n");
            continue;
        }
        if (!confirm) {
            break;
        }
        if ((e = tty_once(fd, "Repeat the passphrase: ", &again, &len2)) != KETEN_OK) {
            break;
        }
        if (len2 == len && sodium_memcmp(p, again, len) == 0) {
            break;
        }
        e = keten_err_set(KETEN_ERR_INVALID, "the two passphrases typed do not match");
        if (last) {
            e = keten_err_set(KETEN_ERR_INVALID,
                "the two passphrases typed did not match, %d times", KETEN_PASSPHRASE_TRIES);
            break;
        }
        tty_complain(fd, ".\nTry again.\n");
    }
    if (e == KETEN_OK) {
        *out = p;
        *out_len = len;
        p = NULL;
    }
    keten_passphrase_free(&p);
    keten_passphrase_free(&again);
    return e;
}

static int tty_open(void)
{
    return open(TTY_PATH, O_RDWR | O_NOCTTY | O_CLOEXEC);
}

static keten_err no_source(void)
{
    return keten_err_set(KETEN_ERR_NEED_PASSPHRASE,
        "no passphrase: give --passphrase-file FILE or set KETEN_PASSPHRASE, or run it on a "
        "terminal");
}

/* The sources in order; a file or the environment once, or the terminal. */
static keten_err get(
    const char *file, const char *prompt, bool confirm, bool strong, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (file != NULL || getenv(PASSPHRASE_ENV) != NULL) {
        e = file != NULL ? from_file(file, out, out_len)
                         : from_env(getenv(PASSPHRASE_ENV), out, out_len);
        if (e == KETEN_OK && strong) {
            e = keten_passphrase_check_strength(*out, *out_len);
            if (e != KETEN_OK) {
                keten_passphrase_free(out);
                *out_len = 0;
                /* Said again with the place it came from. */
                char why[DETAIL_COPY_MAX];
                snprintf(why, sizeof why, "%s", keten_err_detail());
                e = keten_err_set(e, "the passphrase from %s is too weak for this key: %s",
                    file != NULL ? file : PASSPHRASE_ENV, why);
            }
        }
        return e;
    }
    int fd = tty_open();
    if (fd < 0) {
        return no_source();
    }
    e = from_tty(fd, prompt, confirm, strong, out, out_len);
    close(fd);
    return e;
}

keten_err keten_passphrase_get(
    const char *file, const char *prompt, bool confirm, char **out, size_t *out_len)
{
    return get(file, prompt, confirm, false, out, out_len);
}

keten_err keten_passphrase_get_new(
    const char *file, const char *prompt, bool strong, char **out, size_t *out_len)
{
    return get(file, prompt, true, strong, out, out_len);
}

/* UTF-8 characters: every byte that does not continue a sequence. */
static size_t count_chars(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += ((unsigned char)p[i] & 0xc0u) != 0x80u;
    }
    return n;
}

/* Words: runs of characters other than spaces and tabs. */
static size_t count_words(const char *p, size_t len)
{
    size_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        bool space = p[i] == ' ' || p[i] == '\t';
        n += !space && !in_word;
        in_word = !space;
    }
    return n;
}

keten_err keten_passphrase_check_strength(const char *p, size_t len)
{
    size_t chars = count_chars(p, len);
    size_t words = count_words(p, len);
    if (chars >= KETEN_PASSPHRASE_MIN_CHARS || words >= KETEN_PASSPHRASE_MIN_WORDS) {
        return KETEN_OK;
    }
    return keten_err_set(KETEN_ERR_INVALID,
        "a passphrase for an administrator key needs at least %d words or at least %d "
        "characters; this one has %zu word%s and %zu character%s (a sentence of five or more "
        "words is long enough and easy to remember)",
        KETEN_PASSPHRASE_MIN_WORDS, KETEN_PASSPHRASE_MIN_CHARS, words, words == 1 ? "" : "s", chars,
        chars == 1 ? "" : "s");
}

keten_err keten_passphrase_try(
    const char *file, const char *prompt, keten_passphrase_try_fn try_fn, void *arg)
{
    char *p = NULL;
    size_t len = 0;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (file != NULL || getenv(PASSPHRASE_ENV) != NULL) {
        if ((e = get(file, prompt, false, false, &p, &len)) == KETEN_OK) {
            e = try_fn(p, len, arg);
        }
        keten_passphrase_free(&p);
        return e;
    }
    int fd = tty_open();
    if (fd < 0) {
        return no_source();
    }
    for (int attempt = 1; attempt <= KETEN_PASSPHRASE_TRIES; attempt++) {
        if ((e = from_tty(fd, prompt, false, false, &p, &len)) != KETEN_OK) {
            break;
        }
        e = try_fn(p, len, arg);
        keten_passphrase_free(&p);
        if (e != KETEN_ERR_PASSPHRASE) {
            break;
        }
        if (attempt < KETEN_PASSPHRASE_TRIES) {
            char line[64];
            int left = KETEN_PASSPHRASE_TRIES - attempt;
            snprintf(line, sizeof line, "Wrong passphrase; %d %s left.\n", left,
                left == 1 ? "try" : "tries");
            (void)tty_write(fd, line);
        } else {
            char why[DETAIL_COPY_MAX];
            snprintf(why, sizeof why, "%s", keten_err_detail());
            e = keten_err_set(e, "%s (%d tries on the terminal)", why, KETEN_PASSPHRASE_TRIES);
        }
    }
    close(fd);
    return e;
}
