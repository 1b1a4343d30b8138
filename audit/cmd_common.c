/* What several keten-audit commands share (cmd.h). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "filekind.h"
#include "util.h"

int cmd_open_db(const char *cmd, const char *db, auditdb **out)
{
    if (db == NULL) {
        return keten_cli_usage(cmd, "--db BROKER_HOME|AUDIT_DIR is required");
    }
    keten_err e = auditdb_open(db, out);
    if ((e == KETEN_ERR_MALFORMED || e == KETEN_ERR_TOO_LARGE) && tiles_is_export(db)) {
        /* A file of the export that does not parse or is over its cap: a
         * verification failure, the file named in the detail. */
        fprintf(stderr, "keten-audit: the export does not verify: %s\n", keten_err_detail());
        return KETEN_EXIT_VERIFY;
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    if ((*out)->nolock) {
        keten_cli_warn("%s/store/lock.mdb is not writable: the broker's store was read without "
                       "LMDB's lock, which is safe only while no broker writes to it (stopped "
                       "broker, copy or backup); for a running broker run as its user, or use an "
                       "export",
            db);
    }
    return KETEN_EXIT_OK;
}

int cmd_load_anchor(const char *cmd, const char *path, Keten__Anchor **out)
{
    if (path == NULL) {
        return keten_cli_usage(cmd, "--anchor network.pub is required");
    }
    keten_err e = keten_directory_anchor_load(path, out);
    if (e == KETEN_OK) {
        return KETEN_EXIT_OK;
    }
    /* Another file than the anchor (a directory, a key file, a checkpoint,
     * a folder): say which, and what to give. Input the auditor chose, not
     * evidence about the log: exit 1, whatever the parser's error was. */
    char detail[400], what[256];
    snprintf(detail, sizeof detail, "%s", keten_err_detail());
    filekind_kind k = filekind_of_path(path, what, sizeof what);
    if (k != FILEKIND_FOLDER
        && (e == KETEN_ERR_NOT_FOUND || e == KETEN_ERR_IO || e == KETEN_ERR_PERMISSIONS
            || e == KETEN_ERR_NOMEM)) {
        (void)keten_err_set(e, "%s", detail);
        return keten_cli_error(e); /* the detail names the file */
    }
    if (k != FILEKIND_UNKNOWN && k != FILEKIND_ANCHOR) {
        e = keten_err_set(KETEN_ERR_WRONG_TYPE,
            "--anchor %s is %s, not a network anchor: give the network's network.pub, written "
            "by keten-keys init (ADMIN/network.pub)",
            path, what);
    } else {
        e = keten_err_set(KETEN_ERR_MALFORMED, "--anchor %s", detail);
    }
    (void)keten_cli_error(e);
    return KETEN_EXIT_FAILURE;
}

bool cmd_parse_msg_id(const char *s, uint8_t out[static KETEN_MSG_ID_BYTES])
{
    return strlen(s) == 2 * KETEN_MSG_ID_BYTES
        && keten_unhex(s, out, KETEN_MSG_ID_BYTES) == KETEN_OK;
}

int cmd_parse_time(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
    if (keten_time_parse(s, out) != KETEN_OK) {
        return keten_cli_usage(cmd,
            "%s '%s' is not a time: give ISO 8601 UTC (2026-11-19T10:30:00Z) or milliseconds "
            "since the epoch",
            opt, s);
    }
    return KETEN_EXIT_OK;
}

int cmd_check_out_file(const char *path, const char *example)
{
    struct stat st;
    if (path != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char what[256];
        if (filekind_of_path(path, what, sizeof what) != FILEKIND_FOLDER) {
            snprintf(what, sizeof what, "a folder");
        }
        return keten_cli_error(keten_err_set(KETEN_ERR_WRONG_TYPE,
            "--out %s is %s, not a file: give the name of the file to write (such as %s)", path,
            what, example));
    }
    return KETEN_EXIT_OK;
}
