/* What several keten-audit commands share (cmd.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "directory.h"
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
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    return KETEN_EXIT_OK;
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
