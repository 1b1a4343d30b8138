/*
 * test_passphrase.c - where a passphrase comes from: a secret file, the
 * environment (removed and wiped once read), or a terminal prompt without
 * echo, asked again after a mismatch or a wrong passphrase; the strength
 * rule for new administrator keys. The terminal is a real pseudo-terminal
 * made the controlling terminal of a child process; "no terminal" is a
 * child in a new session without one.
 */
/* cmocka needs these first, in this order */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "passphrase.h"
#include "util.h"

#define ENV_NAME "KETEN_PASSPHRASE"
#define PTY_WAIT_MS 20000 /* guard against a hang only; no timing is asserted */

typedef struct ctx {
    char dir[PATH_MAX];
} ctx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return -1;
    }
    snprintf(c->dir, sizeof c->dir, "%s/keten-pass-XXXXXX",
        getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(c->dir) == NULL) {
        free(c);
        return -1;
    }
    unsetenv(ENV_NAME);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    int rc = nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    unsetenv(ENV_NAME);
    return rc;
}

static void path_in(const ctx *c, const char *name, char *out)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", c->dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

/* Write content to dir/name with mode (exactly: chmod after the umask). */
static void make_file(
    const ctx *c, const char *name, const void *data, size_t len, mode_t mode, char *path)
{
    path_in(c, name, path);
    (void)unlink(path);
    assert_int_equal(keten_file_write(path, data, len, 0600, true), KETEN_OK);
    assert_int_equal(chmod(path, mode), 0);
}

static void expect_file(const ctx *c, const char *content, size_t content_len, const char *want)
{
    char path[PATH_MAX];
    make_file(c, "pass", content, content_len, 0600, path);
    char *p = NULL;
    size_t len = 0;
    keten_err e = keten_passphrase_get(path, "Passphrase: ", false, &p, &len);
    if (e != KETEN_OK) {
        print_error("%s\n", keten_err_detail());
    }
    assert_int_equal(e, KETEN_OK);
    assert_non_null(p);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
    assert_int_equal(p[len], '\0');
    keten_passphrase_free(&p);
    assert_null(p);
}

static void expect_file_error(
    const ctx *c, const char *content, size_t content_len, mode_t mode, keten_err want)
{
    char path[PATH_MAX];
    make_file(c, "pass", content, content_len, mode, path);
    char *p = (char *)(uintptr_t)1;
    size_t len = 99;
    keten_err e = keten_passphrase_get(path, "Passphrase: ", false, &p, &len);
    if (e != want) {
        print_error(
            "got %s (%s), want %s\n", keten_err_str(e), keten_err_detail(), keten_err_str(want));
    }
    assert_int_equal(e, want);
    assert_null(p);
}

static void test_from_file(void **state)
{
    ctx *c = *state;
    expect_file(c, "correct horse", 13, "correct horse");
    expect_file(c, "correct horse\n", 14, "correct horse");
    expect_file(c, "correct horse\r\n", 15, "correct horse");
    /* Only one newline is removed; other white space is the passphrase's. */
    expect_file(c, "correct horse\n\n", 15, "correct horse\n");
    expect_file(c, " spaced \n", 9, " spaced ");
    expect_file(c, "x", 1, "x");
    /* The file wins over the environment, which it leaves alone. */
    assert_int_equal(setenv(ENV_NAME, "from-env", 1), 0);
    expect_file(c, "from-file\n", 10, "from-file");
    assert_non_null(getenv(ENV_NAME));
    assert_string_equal(getenv(ENV_NAME), "from-env");
    unsetenv(ENV_NAME);
    /* Exactly the cap is accepted. */
    char *big = malloc(KETEN_PASSPHRASE_MAX + 1);
    assert_non_null(big);
    memset(big, 'p', KETEN_PASSPHRASE_MAX);
    big[KETEN_PASSPHRASE_MAX] = '\0';
    expect_file(c, big, KETEN_PASSPHRASE_MAX, big);
    free(big);
}

static void test_file_refused(void **state)
{
    ctx *c = *state;
    expect_file_error(c, "secret\n", 7, 0644, KETEN_ERR_PERMISSIONS);
    assert_non_null(strstr(keten_err_detail(), "chmod 600"));
    expect_file_error(c, "secret\n", 7, 0640, KETEN_ERR_PERMISSIONS);
    expect_file_error(c, "secret\n", 7, 0602, KETEN_ERR_PERMISSIONS);
    expect_file_error(c, "", 0, 0600, KETEN_ERR_INVALID);
    expect_file_error(c, "\n", 1, 0600, KETEN_ERR_INVALID);
    expect_file_error(c, "\r\n", 2, 0600, KETEN_ERR_INVALID);
    expect_file_error(c, "sec\0ret\n", 8, 0600, KETEN_ERR_INVALID);
    char *big = malloc(KETEN_PASSPHRASE_MAX + 2);
    assert_non_null(big);
    memset(big, 'p', KETEN_PASSPHRASE_MAX + 1);
    big[KETEN_PASSPHRASE_MAX + 1] = '\0';
    expect_file_error(c, big, KETEN_PASSPHRASE_MAX + 1, 0600, KETEN_ERR_TOO_LARGE);
    free(big);

    /* A symbolic link to a good file, and a missing file. */
    char target[PATH_MAX], link_path[PATH_MAX];
    make_file(c, "target", "secret\n", 7, 0600, target);
    path_in(c, "link", link_path);
    assert_int_equal(symlink(target, link_path), 0);
    char *p = NULL;
    size_t len;
    assert_int_equal(
        keten_passphrase_get(link_path, "P: ", false, &p, &len), KETEN_ERR_PERMISSIONS);
    assert_null(p);
    path_in(c, "missing", link_path);
    assert_int_equal(keten_passphrase_get(link_path, "P: ", false, &p, &len), KETEN_ERR_NOT_FOUND);
    assert_null(p);
    /* A file that was named but is refused does not fall back to the
     * environment. */
    assert_int_equal(setenv(ENV_NAME, "from-env", 1), 0);
    assert_int_equal(keten_passphrase_get(link_path, "P: ", false, &p, &len), KETEN_ERR_NOT_FOUND);
    assert_null(p);
    unsetenv(ENV_NAME);
}

static void test_from_env(void **state)
{
    (void)state;
    /* putenv keeps our buffer in the environment, so we can see it wiped. */
    static char entry[] = ENV_NAME "=hunter2 hunter2";
    char *value = entry + sizeof ENV_NAME;
    size_t value_len = strlen(value);
    assert_int_equal(putenv(entry), 0);
    assert_ptr_equal(getenv(ENV_NAME), value);

    char *p = NULL;
    size_t len = 0;
    assert_int_equal(keten_passphrase_get(NULL, "P: ", false, &p, &len), KETEN_OK);
    assert_int_equal(len, strlen("hunter2 hunter2"));
    assert_string_equal(p, "hunter2 hunter2");
    /* Gone from the environment, and its bytes overwritten. */
    assert_null(getenv(ENV_NAME));
    for (size_t i = 0; i < value_len; i++) {
        assert_int_equal(value[i], 0);
    }
    keten_passphrase_free(&p);
    assert_null(p);
    keten_passphrase_free(&p); /* NULL is fine */
    keten_passphrase_free(NULL);

    /* An empty variable is refused, and removed all the same. */
    assert_int_equal(setenv(ENV_NAME, "", 1), 0);
    assert_int_equal(keten_passphrase_get(NULL, "P: ", false, &p, &len), KETEN_ERR_INVALID);
    assert_null(p);
    assert_null(getenv(ENV_NAME));
    /* Over the cap: refused and removed. */
    char *big = malloc(KETEN_PASSPHRASE_MAX + 2);
    assert_non_null(big);
    memset(big, 'p', KETEN_PASSPHRASE_MAX + 1);
    big[KETEN_PASSPHRASE_MAX + 1] = '\0';
    assert_int_equal(setenv(ENV_NAME, big, 1), 0);
    assert_int_equal(keten_passphrase_get(NULL, "P: ", false, &p, &len), KETEN_ERR_TOO_LARGE);
    assert_null(getenv(ENV_NAME));
    free(big);
}

static void test_scrub_env(void **state)
{
    (void)state;
    static char entry[] = ENV_NAME "=do-not-inherit";
    char *value = entry + sizeof ENV_NAME;
    assert_int_equal(putenv(entry), 0);
    keten_passphrase_scrub_env();
    assert_null(getenv(ENV_NAME));
    for (size_t i = 0; i < strlen("do-not-inherit"); i++) {
        assert_int_equal(value[i], 0);
    }
    keten_passphrase_scrub_env(); /* nothing set: a no-op */
    assert_null(getenv(ENV_NAME));
}

/* ---- strength ------------------------------------------------------------ */

static void expect_strength(const char *pass, keten_err want)
{
    keten_err e = keten_passphrase_check_strength(pass, strlen(pass));
    if (e != want) {
        print_error("'%s': got %s (%s)\n", pass, keten_err_str(e), keten_err_detail());
    }
    assert_int_equal(e, want);
}

static void test_strength(void **state)
{
    (void)state;
    /* Accepted: five words, or twenty characters. */
    expect_strength("the cat sat on mat", KETEN_OK);
    expect_strength("one\ttwo\tthree four five", KETEN_OK);
    expect_strength("aaaaaaaaaaaaaaaaaaaa", KETEN_OK);
    expect_strength("correct horse battery", KETEN_OK);
    /* 20 characters of two bytes each. */
    expect_strength("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
                    "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                    "\xc3\xa9",
        KETEN_OK);
    /* Refused twins: four words of 19 characters; 19 characters; 19
     * characters in 38 bytes (bytes are not characters); spaces are not
     * words. */
    expect_strength("abc", KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), "at least 5 words or at least 20 characters"));
    assert_non_null(strstr(keten_err_detail(), "this one has 1 word and 3 characters"));
    expect_strength("the cat sat onmatxx", KETEN_ERR_INVALID);
    expect_strength("aaaaaaaaaaaaaaaaaaa", KETEN_ERR_INVALID);
    expect_strength("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
                    "\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
        KETEN_ERR_INVALID);
    expect_strength("a  b   c    d      ", KETEN_ERR_INVALID);
}

static void test_new_from_file_strength(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    char *p = NULL;
    size_t len = 0;
    make_file(c, "weak", "abc\n", 4, 0600, path);
    assert_int_equal(keten_passphrase_get_new(path, "P: ", true, &p, &len), KETEN_ERR_INVALID);
    assert_null(p);
    assert_non_null(strstr(keten_err_detail(), "is too weak for this key"));
    assert_non_null(strstr(keten_err_detail(), path));
    /* Without the strength rule the same file is fine. */
    assert_int_equal(keten_passphrase_get_new(path, "P: ", false, &p, &len), KETEN_OK);
    assert_string_equal(p, "abc");
    keten_passphrase_free(&p);
    make_file(c, "strong", "a sentence of five words\n", 25, 0600, path);
    assert_int_equal(keten_passphrase_get_new(path, "P: ", true, &p, &len), KETEN_OK);
    assert_string_equal(p, "a sentence of five words");
    keten_passphrase_free(&p);
    /* The environment: refused, and removed all the same. */
    assert_int_equal(setenv(ENV_NAME, "abc", 1), 0);
    assert_int_equal(keten_passphrase_get_new(NULL, "P: ", true, &p, &len), KETEN_ERR_INVALID);
    assert_non_null(strstr(keten_err_detail(), ENV_NAME));
    assert_null(getenv(ENV_NAME));
    assert_null(p);
    assert_int_equal(setenv(ENV_NAME, "a sentence of five words", 1), 0);
    assert_int_equal(keten_passphrase_get_new(NULL, "P: ", true, &p, &len), KETEN_OK);
    keten_passphrase_free(&p);
}

/* ---- trying a passphrase --------------------------------------------------- */

#define RIGHT "the right one"

typedef struct tries {
    int calls;
} tries;

static keten_err try_right(const char *pass, size_t len, void *arg)
{
    tries *t = arg;
    t->calls++;
    if (len == strlen(RIGHT) && memcmp(pass, RIGHT, len) == 0) {
        return KETEN_OK;
    }
    return keten_err_set(KETEN_ERR_PASSPHRASE, "the passphrase does not open the test lock");
}

static keten_err try_broken(const char *pass, size_t len, void *arg)
{
    (void)pass;
    (void)len;
    tries *t = arg;
    t->calls++;
    return keten_err_set(KETEN_ERR_MALFORMED, "the test lock is damaged");
}

static void test_try_file_and_env(void **state)
{
    ctx *c = *state;
    char path[PATH_MAX];
    tries t = { 0 };
    make_file(c, "right", RIGHT "\n", strlen(RIGHT) + 1, 0600, path);
    assert_int_equal(keten_passphrase_try(path, "P: ", try_right, &t), KETEN_OK);
    assert_int_equal(t.calls, 1);
    /* A wrong one from a file is tried once: a script gets its answer. */
    t.calls = 0;
    make_file(c, "wrong", "wrong\n", 6, 0600, path);
    assert_int_equal(keten_passphrase_try(path, "P: ", try_right, &t), KETEN_ERR_PASSPHRASE);
    assert_int_equal(t.calls, 1);
    assert_string_equal(keten_err_detail(), "the passphrase does not open the test lock");
    t.calls = 0;
    assert_int_equal(setenv(ENV_NAME, "wrong", 1), 0);
    assert_int_equal(keten_passphrase_try(NULL, "P: ", try_right, &t), KETEN_ERR_PASSPHRASE);
    assert_int_equal(t.calls, 1);
    assert_null(getenv(ENV_NAME));
    t.calls = 0;
    assert_int_equal(setenv(ENV_NAME, RIGHT, 1), 0);
    assert_int_equal(keten_passphrase_try(NULL, "P: ", try_right, &t), KETEN_OK);
    assert_int_equal(t.calls, 1);
    /* A refused file never reaches try_fn. */
    t.calls = 0;
    make_file(c, "open", RIGHT "\n", strlen(RIGHT) + 1, 0644, path);
    assert_int_equal(keten_passphrase_try(path, "P: ", try_right, &t), KETEN_ERR_PERMISSIONS);
    assert_int_equal(t.calls, 0);
}

/* ---- terminal ---------------------------------------------------------- */

typedef enum call_kind {
    CALL_GET, /* keten_passphrase_get */
    CALL_NEW_STRONG, /* keten_passphrase_get_new with the strength rule */
    CALL_TRY, /* keten_passphrase_try with try_right */
    CALL_TRY_BROKEN, /* keten_passphrase_try with try_broken */
} call_kind;

typedef struct child_report {
    int rc;
    size_t len;
    char pass[64];
    int had_ctty; /* /dev/tty opened before the call */
    int echo_before;
    int echo_after;
    int calls; /* calls of the try function */
} child_report;

#define SCRIPT_STEPS 8

typedef struct pty_script {
    const char *expect[SCRIPT_STEPS]; /* prompts to wait for, in order (NULL: end) */
    const char *send[SCRIPT_STEPS]; /* what to type after each prompt */
    bool confirm;
    call_kind call;
} pty_script;

static void write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* In the child: a new session; with a pty slave name, that terminal becomes
 * the controlling one. Never returns. */
static void child_run(const char *slave_name, const pty_script *s, int report_fd)
{
    child_report r;
    memset(&r, 0, sizeof r);
    r.rc = -1;
    int slave = -1;
    unsetenv(ENV_NAME);
    if (setsid() < 0) {
        goto done;
    }
    if (slave_name != NULL) {
        slave = open(slave_name, O_RDWR); /* no O_NOCTTY: becomes our terminal */
        if (slave < 0) {
            goto done;
        }
        struct termios t;
        if (tcgetattr(slave, &t) == 0) {
            r.echo_before = (t.c_lflag & ECHO) != 0;
        }
    }
    int probe = open("/dev/tty", O_RDWR | O_NOCTTY);
    r.had_ctty = probe >= 0;
    if (probe >= 0) {
        close(probe);
    }
    char *p = NULL;
    size_t len = 0;
    tries t = { 0 };
    switch (s->call) {
    case CALL_GET:
        r.rc = (int)keten_passphrase_get(NULL, "Passphrase: ", s->confirm, &p, &len);
        break;
    case CALL_NEW_STRONG:
        r.rc = (int)keten_passphrase_get_new(NULL, "Passphrase: ", true, &p, &len);
        break;
    case CALL_TRY:
        r.rc = (int)keten_passphrase_try(NULL, "Passphrase: ", try_right, &t);
        break;
    case CALL_TRY_BROKEN:
        r.rc = (int)keten_passphrase_try(NULL, "Passphrase: ", try_broken, &t);
        break;
    }
    r.calls = t.calls;
    if (r.rc == KETEN_OK && p != NULL && len < sizeof r.pass) {
        memcpy(r.pass, p, len);
        r.len = len;
    }
    keten_passphrase_free(&p);
    if (slave >= 0) {
        struct termios tio;
        if (tcgetattr(slave, &tio) == 0) {
            r.echo_after = (tio.c_lflag & ECHO) != 0;
        }
    }
done:
    write_full(report_fd, &r, sizeof r);
    _exit(0);
}

static void read_report(int fd, pid_t pid, child_report *r)
{
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t n = read(fd, (char *)r + got, sizeof *r - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n > 0);
        got += (size_t)n;
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Read from the pty master until text appears after offset *from; what was
 * read is appended to seen (so the test can check that nothing typed was
 * echoed), and *from moves past the match. */
static void wait_for(int master, const char *text, size_t *from, char *seen, size_t seen_cap)
{
    for (;;) {
        const char *hit = strstr(seen + *from, text);
        if (hit != NULL) {
            *from = (size_t)(hit - seen) + strlen(text);
            return;
        }
        struct pollfd pfd = { .fd = master, .events = POLLIN };
        int n = poll(&pfd, 1, PTY_WAIT_MS);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        assert_true(n == 1);
        size_t used = strlen(seen);
        assert_true(used + 1 < seen_cap);
        ssize_t got = read(master, seen + used, seen_cap - used - 1);
        assert_true(got > 0);
        seen[used + (size_t)got] = '\0';
    }
}

/* Run the call in a child whose controlling terminal is a new pty, type the
 * script, and return the child's report and the output. */
static void run_on_pty(const pty_script *s, child_report *r, char *seen, size_t seen_cap)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    char slave_name[128];
    assert_int_equal(ptsname_r(master, slave_name, sizeof slave_name), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        close(master);
        child_run(slave_name, s, pipefd[1]);
    }
    close(pipefd[1]);
    seen[0] = '\0';
    size_t from = 0;
    for (size_t i = 0; i < SCRIPT_STEPS && s->expect[i] != NULL; i++) {
        wait_for(master, s->expect[i], &from, seen, seen_cap);
        if (s->send[i][0] == '\0') {
            continue; /* a message between prompts: nothing to type */
        }
        /* The prompt is written after echo went off: check it on the line. */
        struct termios t;
        assert_int_equal(tcgetattr(master, &t), 0);
        assert_int_equal(t.c_lflag & ECHO, 0);
        write_full(master, s->send[i], strlen(s->send[i]));
    }
    read_report(pipefd[0], pid, r);
    close(pipefd[0]);
    /* Collect whatever else the child wrote. */
    for (;;) {
        struct pollfd pfd = { .fd = master, .events = POLLIN };
        if (poll(&pfd, 1, 0) != 1) {
            break;
        }
        size_t used = strlen(seen);
        if (used + 1 >= seen_cap) {
            break;
        }
        ssize_t got = read(master, seen + used, seen_cap - used - 1);
        if (got <= 0) {
            break;
        }
        seen[used + (size_t)got] = '\0';
    }
    close(master);
}

static void test_tty_prompt(void **state)
{
    (void)state;
    child_report r;
    char seen[4096];
    pty_script s = { { "Passphrase: " }, { "tty secret 1\n" }, false, CALL_GET };
    run_on_pty(&s, &r, seen, sizeof seen);
    assert_true(r.had_ctty);
    assert_int_equal(r.rc, KETEN_OK);
    assert_int_equal(r.len, strlen("tty secret 1"));
    assert_memory_equal(r.pass, "tty secret 1", r.len);
    /* Not echoed, and echo is back on afterwards. */
    assert_null(strstr(seen, "tty secret"));
    assert_true(r.echo_before);
    assert_true(r.echo_after);
}

static void test_tty_confirm(void **state)
{
    (void)state;
    child_report r;
    char seen[4096];
    pty_script same
        = { { "Passphrase: ", "Repeat" }, { "twice typed\n", "twice typed\n" }, true, CALL_GET };
    run_on_pty(&same, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_OK);
    assert_int_equal(r.len, strlen("twice typed"));
    assert_memory_equal(r.pass, "twice typed", r.len);
    assert_null(strstr(seen, "twice"));
    assert_true(r.echo_after);

    /* A mismatch is said and asked again; the second round matches. */
    pty_script retry = { { "Passphrase: ", "Repeat", "Try again", "Passphrase: ", "Repeat" },
        { "first one\n", "first onE\n", "", "second one\n", "second one\n" }, true, CALL_GET };
    run_on_pty(&retry, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_OK);
    assert_memory_equal(r.pass, "second one", r.len);
    assert_non_null(strstr(seen, "do not match"));
    assert_null(strstr(seen, "first"));
    assert_true(r.echo_after);

    /* Three mismatches: refused. A prefix of the first is a mismatch too
     * (lengths compared first). */
    pty_script differ = { { "Passphrase: ", "Repeat", "Passphrase: ", "Repeat",
                              "Passphrase: ", "Repeat" },
        { "first one\n", "first onE\n", "first one\n", "first\n", "a\n", "b\n" }, true, CALL_GET };
    run_on_pty(&differ, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_ERR_INVALID);
    assert_true(r.echo_after);
}

static void test_tty_empty_asked_again(void **state)
{
    (void)state;
    child_report r;
    char seen[4096];
    pty_script again
        = { { "Passphrase: ", "Passphrase: " }, { "\n", "not empty\n" }, false, CALL_GET };
    run_on_pty(&again, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_OK);
    assert_memory_equal(r.pass, "not empty", r.len);
    assert_non_null(strstr(seen, "is empty"));

    pty_script s = { { "Passphrase: ", "Passphrase: ", "Passphrase: " }, { "\n", "\n", "\n" },
        false, CALL_GET };
    run_on_pty(&s, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_ERR_INVALID);
    assert_true(r.echo_after);
}

static void test_tty_new_strong(void **state)
{
    (void)state;
    child_report r;
    char seen[8192];
    /* A weak one is explained and asked again, before the repeat. */
    pty_script s = { { "Passphrase: ", "Try again", "Passphrase: ", "Repeat" },
        { "abc\n", "", "my quiet harbour at dawn\n", "my quiet harbour at dawn\n" }, true,
        CALL_NEW_STRONG };
    run_on_pty(&s, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_OK);
    assert_memory_equal(r.pass, "my quiet harbour at dawn", r.len);
    assert_non_null(strstr(seen, "at least 5 words or at least 20 characters"));
    assert_null(strstr(seen, "harbour"));

    /* Weak three times: refused with the rule. */
    pty_script weak = { { "Passphrase: ", "Passphrase: ", "Passphrase: " },
        { "abc\n", "abcd\n", "abcde\n" }, true, CALL_NEW_STRONG };
    run_on_pty(&weak, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_ERR_INVALID);
    assert_true(r.echo_after);
}

static void test_tty_try(void **state)
{
    (void)state;
    child_report r;
    char seen[4096];
    /* Wrong twice, then right: three calls, success. */
    pty_script s
        = { { "Passphrase: ", "2 tries left", "Passphrase: ", "1 try left", "Passphrase: " },
              { "wrong 1\n", "", "wrong 2\n", "", RIGHT "\n" }, false, CALL_TRY };
    run_on_pty(&s, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_OK);
    assert_int_equal(r.calls, 3);
    assert_null(strstr(seen, "wrong 1"));

    /* Wrong three times: KETEN_ERR_PASSPHRASE, no fourth prompt. */
    pty_script wrong = { { "Passphrase: ", "Passphrase: ", "Passphrase: " },
        { "a\n", "b\n", "c\n" }, false, CALL_TRY };
    run_on_pty(&wrong, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_ERR_PASSPHRASE);
    assert_int_equal(r.calls, 3);
    assert_true(r.echo_after);

    /* Any other failure is not a wrong passphrase: no second prompt. */
    pty_script broken = { { "Passphrase: " }, { RIGHT "\n" }, false, CALL_TRY_BROKEN };
    run_on_pty(&broken, &r, seen, sizeof seen);
    assert_int_equal(r.rc, KETEN_ERR_MALFORMED);
    assert_int_equal(r.calls, 1);
}

/* Nothing given and no terminal: in a new session there is no controlling
 * terminal, so this holds wherever the test runs. */
static void test_no_source_no_tty(void **state)
{
    (void)state;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        pty_script none = { { NULL }, { NULL }, false, CALL_GET };
        child_run(NULL, &none, pipefd[1]);
    }
    close(pipefd[1]);
    child_report r;
    read_report(pipefd[0], pid, &r);
    close(pipefd[0]);
    assert_false(r.had_ctty);
    assert_int_equal(r.rc, KETEN_ERR_NEED_PASSPHRASE);
}

/* The same in this process, as the tests are run (without a terminal in CI).
 * When /dev/tty opens here (someone ran the test from a terminal), calling
 * keten_passphrase_get would prompt, so only this assertion is skipped;
 * test_no_source_no_tty above covers the case in any setting. */
static void test_no_source_here(void **state)
{
    (void)state;
    unsetenv(ENV_NAME);
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        skip();
    }
    char *p = (char *)(uintptr_t)1;
    size_t len = 7;
    assert_int_equal(keten_passphrase_get(NULL, "P: ", true, &p, &len), KETEN_ERR_NEED_PASSPHRASE);
    assert_null(p);
    assert_int_equal(len, 0);
    assert_string_equal(keten_err_detail(),
        "no passphrase: give --passphrase-file FILE or set KETEN_PASSPHRASE, or run it on a "
        "terminal");
}

int main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_from_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_refused, setup, teardown),
        cmocka_unit_test(test_from_env),
        cmocka_unit_test(test_scrub_env),
        cmocka_unit_test(test_strength),
        cmocka_unit_test_setup_teardown(test_new_from_file_strength, setup, teardown),
        cmocka_unit_test_setup_teardown(test_try_file_and_env, setup, teardown),
        cmocka_unit_test(test_tty_prompt),
        cmocka_unit_test(test_tty_confirm),
        cmocka_unit_test(test_tty_empty_asked_again),
        cmocka_unit_test(test_tty_new_strong),
        cmocka_unit_test(test_tty_try),
        cmocka_unit_test(test_no_source_no_tty),
        cmocka_unit_test(test_no_source_here),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
