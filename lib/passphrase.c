#include "passphrase.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

#define PASSPHRASE_ENV "KETEN_PASSPHRASE"
#define TTY_PATH "/dev/tty"

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

static keten_err from_tty(int fd, const char *prompt, bool confirm, char **out, size_t *out_len)
{
    struct termios saved, quiet;
    bool echo_off = false;
    char *p = NULL;
    char *again = NULL;
    size_t len = 0, len2 = 0;
    keten_err e = KETEN_OK;

    if (tcgetattr(fd, &saved) != 0) {
        return keten_err_set(
            KETEN_ERR_IO, "cannot read the terminal settings: %s", strerror(errno));
    }
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    quiet.c_lflag |= ICANON;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot turn terminal echo off: %s", strerror(errno));
        goto out;
    }
    echo_off = true;
    p = pass_alloc();
    if (p == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the passphrase");
        goto out;
    }
    e = tty_ask(fd, prompt != NULL ? prompt : "Passphrase: ", p, &len);
    if (e != KETEN_OK) {
        goto out;
    }
    e = check_pass(p, len, "the terminal");
    if (e != KETEN_OK) {
        goto out;
    }
    if (confirm) {
        again = pass_alloc();
        if (again == NULL) {
            e = keten_err_set(KETEN_ERR_NOMEM, "no secure memory for the passphrase");
            goto out;
        }
        e = tty_ask(fd, "Repeat the passphrase: ", again, &len2);
        if (e != KETEN_OK) {
            goto out;
        }
        if (len2 != len || sodium_memcmp(p, again, len) != 0) {
            e = keten_err_set(KETEN_ERR_INVALID, "passphrases do not match; try again");
            goto out;
        }
    }
    *out = p;
    *out_len = len;
    p = NULL;
out:
    if (echo_off) {
        /* Restore on every path; retry if a signal cuts in. */
        while (tcsetattr(fd, TCSAFLUSH, &saved) != 0 && errno == EINTR) { }
    }
    keten_passphrase_free(&p);
    keten_passphrase_free(&again);
    return e;
}

keten_err keten_passphrase_get(
    const char *file, const char *prompt, bool confirm, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    keten_err e = ensure_sodium();
    if (e != KETEN_OK) {
        return e;
    }
    if (file != NULL) {
        return from_file(file, out, out_len);
    }
    char *v = getenv(PASSPHRASE_ENV);
    if (v != NULL) {
        return from_env(v, out, out_len);
    }
    int fd = open(TTY_PATH, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return keten_err_set(KETEN_ERR_NEED_PASSPHRASE,
            "no passphrase: give --passphrase-file FILE or set KETEN_PASSPHRASE, or run it on a "
            "terminal");
    }
    e = from_tty(fd, prompt, confirm, out, out_len);
    close(fd);
    return e;
}
