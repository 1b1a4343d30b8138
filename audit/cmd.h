/*
 * cmd.h - the commands of keten-audit (docs/audit.md), one
 * cmd_<verb>() per file audit/cmd_<verb>.c. A command gets the arguments
 * after "keten-audit" (argv[0] is the command's name) and returns the exit
 * code: 0 success, 1 failure, 2 usage error, 3 verification failure.
 *
 * cmd_common.c holds what several commands share: opening --db with its
 * warnings, the anchor, msg_ids and times given on the command line.
 * Thread safety: command-line programs, main thread only.
 */
#ifndef KETEN_AUDIT_CMD_H
#define KETEN_AUDIT_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "auditdb.h"
#include "keten.h"
#include "records.h"

int cmd_export(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_prove(int argc, char **argv);
int cmd_check_proof(int argc, char **argv);

/* The most --checkpoint options one command takes. */
#define CMD_CHECKPOINTS_MAX 256

/* Open --db read-only; prints the error (and a warning when a broker store
 * is read without LMDB's lock). Returns 0 or the exit code. */
int cmd_open_db(const char *cmd, const char *db, auditdb **out);

/* Load --anchor; prints the error. Returns 0 or the exit code. */
int cmd_load_anchor(const char *cmd, const char *path, Keten__Anchor **out);

/* --out names a file to write: a folder there is refused before any work
 * (the error names what the folder is, and gives example as a file name).
 * Returns 0 or the exit code (message printed). */
int cmd_check_out_file(const char *path, const char *example);

/* A msg_id as 32 hex characters. */
bool cmd_parse_msg_id(const char *s, uint8_t out[static KETEN_MSG_ID_BYTES]);

/* --from / --to into the filter (ISO 8601 UTC or ms since the epoch);
 * returns 0 or the usage exit code (message printed). */
int cmd_parse_time(const char *cmd, const char *opt, const char *s, uint64_t *out);

#endif
