#include "auditdb.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brokerstore.h"

#define TMP_TEMPLATE "keten-audit.XXXXXX"

/*
 * The temporary export holds a copy of every record of the log. A fatal
 * signal (Ctrl-C, SIGTERM, SIGHUP, a reader that closed the pipe) must not
 * leave it behind: the handler below removes it (brokerstore_remove_tree is
 * async-signal-safe), then dies of the same signal. One export at a time: a
 * command opens one broker home.
 */
static char g_tmp[PATH_MAX];
static volatile sig_atomic_t g_tmp_set;
static const int g_fatal[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };

static void on_fatal(int sig)
{
    if (g_tmp_set) {
        g_tmp_set = 0;
        brokerstore_remove_tree(g_tmp);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Handle the fatal signals that are not ignored (nohup, a shell's trap). */
static void guard_tmp(const char *tmp)
{
    memcpy(g_tmp, tmp, strlen(tmp) + 1);
    g_tmp_set = 1;
    for (size_t i = 0; i < sizeof g_fatal / sizeof g_fatal[0]; i++) {
        struct sigaction old, sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal;
        sigfillset(&sa.sa_mask);
        if (sigaction(g_fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            (void)sigaction(g_fatal[i], &sa, NULL);
        }
    }
}

static keten_err make_tmp(char out[static PATH_MAX])
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] != '/') {
        base = "/tmp";
    }
    if (snprintf(out, PATH_MAX, "%s/" TMP_TEMPLATE, base) >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "TMPDIR %s is too long", base);
    }
    if (mkdtemp(out) == NULL) {
        return keten_err_set(KETEN_ERR_IO,
            "cannot make a temporary folder in %s for the export of the broker's store: %s; set "
            "TMPDIR to a writable folder",
            base, strerror(errno));
    }
    return KETEN_OK;
}

static keten_err open_store(const char *db, bool env_folder, auditdb *a)
{
    keten_err e = make_tmp(a->tmp);
    if (e != KETEN_OK) {
        a->tmp[0] = '\0';
        return e;
    }
    guard_tmp(a->tmp);
    /* The export goes into a fresh folder inside the private one (0700). */
    char out[PATH_MAX];
    if (snprintf(out, sizeof out, "%s/export", a->tmp) >= (int)sizeof out) {
        return keten_err_set(KETEN_ERR_INVALID, "TMPDIR is too long");
    }
    brokerstore_result r;
    if ((e = brokerstore_export(
             db, env_folder ? BROKERSTORE_BARE : BROKERSTORE_HOME, out, false, &r))
        != KETEN_OK) {
        return e;
    }
    a->nolock = r.nolock;
    return tiles_open(out, &a->t);
}

static keten_err open_any(const char *db, bool env_folder, auditdb **out)
{
    *out = NULL;
    if (db == NULL) {
        return keten_err_set(KETEN_ERR_INVALID, "no database given (--db)");
    }
    auditdb *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "opening %s", db);
    }
    keten_err e = KETEN_OK;
    if (snprintf(a->path, sizeof a->path, "%s", db) >= (int)sizeof a->path) {
        e = keten_err_set(KETEN_ERR_INVALID, "the path %s is too long", db);
    } else if (!env_folder && tiles_is_export(db)) {
        a->is_export = true;
        e = tiles_open(db, &a->t);
    } else {
        e = open_store(db, env_folder, a);
    }
    if (e != KETEN_OK) {
        auditdb_close(&a);
        return e;
    }
    a->size = tiles_size(a->t);
    *out = a;
    return KETEN_OK;
}

keten_err auditdb_open(const char *db, auditdb **out)
{
    return open_any(db, false, out);
}

keten_err auditdb_open_env(const char *env, auditdb **out)
{
    return open_any(env, true, out);
}

void auditdb_close(auditdb **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    auditdb *a = *self_p;
    tiles_close(&a->t);
    if (a->tmp[0] != '\0') {
        g_tmp_set = 0;
        brokerstore_remove_tree(a->tmp);
    }
    free(a);
    *self_p = NULL;
}

void auditdb_describe(const auditdb *self, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s %s%s", self->is_export ? "audit export" : "broker home", self->path,
        self->is_export ? "" : " (read as a snapshot exported to a temporary folder)");
}

const tiles_note *auditdb_notes(const auditdb *self, size_t *n)
{
    return tiles_notes(self->t, n);
}

keten_err auditdb_checkpoint_last(const auditdb *self, uint64_t max_size, uint64_t *size,
    const char **note, size_t *len, bool *found)
{
    *found = false;
    size_t n = 0;
    const tiles_note *notes = tiles_notes(self->t, &n);
    for (size_t i = n; i > 0; i--) {
        if (notes[i - 1].size <= max_size) {
            *size = notes[i - 1].size;
            *note = notes[i - 1].note;
            *len = notes[i - 1].len;
            *found = true;
            break;
        }
    }
    return KETEN_OK;
}
