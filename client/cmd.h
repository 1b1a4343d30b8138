/*
 * cmd.h - the commands of keten-node besides keygen (keten-node(8)), one
 * cmd_<verb>() per file client/cmd_<verb>.c. A command gets the arguments
 * after "keten-node" (argv[0] is the command's name) and returns the exit
 * code: 0 success, 1 failure, 2 usage error, 3 verification failure.
 * All but `run` are thin clients of the daemon's local API (apiclient.h).
 */
#ifndef KETEN_NODE_CMD_H
#define KETEN_NODE_CMD_H

int cmd_run(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_inbox(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_ack(int argc, char **argv);
int cmd_sent(int argc, char **argv);
int cmd_reply(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_alarm(int argc, char **argv);

#endif
