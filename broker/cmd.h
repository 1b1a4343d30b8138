/*
 * cmd.h - commands of keten-broker implemented outside main.c, one
 * cmd_<verb>() per file. A command gets the arguments after "keten-broker"
 * (argv[0] is the command's name) and returns the exit code: 0 success,
 * 1 failure, 2 usage error, 3 verification failure.
 */
#ifndef KETEN_BROKER_CMD_H
#define KETEN_BROKER_CMD_H

/* keten-broker run: the daemon (cmd_run.c). */
int cmd_run(int argc, char **argv);

/* keten-broker backup: a consistent copy of the store (cmd_backup.c). */
int cmd_backup(int argc, char **argv);

#endif
