/*
 * cmd.h - the commands of keten-keys (docs/administration.md), one cmd_<verb>()
 * per command, each in keys/cmd_*.c. A command gets the arguments after
 * "keten-keys" (argv[0] is the command's name), parses its options with
 * getopt_long, prints its result, and returns the exit code: 0 success,
 * 1 failure, 2 usage error, 3 verification failure.
 */
#ifndef KETEN_KEYS_CMD_H
#define KETEN_KEYS_CMD_H

int cmd_admin_keygen(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_register(int argc, char **argv);
int cmd_unregister(int argc, char **argv);
int cmd_approve(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_set_admins(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_partners(int argc, char **argv);
int cmd_show(int argc, char **argv);

#endif
