/*
 * keten-node - a partner's node and its local command line (keten-node(8)).
 * This file lists the commands (lib/cmdtable.h); each is a cmd_<verb>().
 *
 *   keten-node keygen --home DIR --id ID --role ROLE --org NAME
 *                     [--no-passphrase] [--passphrase-file F] [--json]
 *   keten-node keygen --rotate --home DIR [--passphrase-file F] [--json]
 */
#include "cli.h"
#include "cmdtable.h"
#include "cmd.h"
#include "rotate.h"

static const char keygen_usage[]
    = "Usage: keten-node keygen --home DIR --id ID --role ROLE --org NAME\n"
      "                         [--no-passphrase] [--passphrase-file F] [--json]\n"
      "       keten-node keygen --rotate --home DIR [--passphrase-file F] [--json]\n"
      "\n"
      "Make this node's keys (signing, encryption, transport) in DIR, which is\n"
      "created (mode 0700) if needed; its parent folder must exist. It holds\n"
      "DIR/identity.secret (the secret keys, mode 0600, protected by a passphrase;\n"
      "never overwritten) and\n"
      "DIR/identity.request (the enrollment request with proof of possession).\n"
      "Hand the request to the network's administrators (keten-keys approve) and\n"
      "read them its sha256 by another channel. The secret keys never leave DIR.\n"
      "\n"
      "With --rotate: new keys for the node of DIR (same id, role and organisation),\n"
      "written to DIR/identity.next.secret (same passphrase as identity.secret)\n"
      "and DIR/identity.next.request, for the administrators to approve with\n"
      "keten-keys approve --rotate. The node goes on with its current keys until a\n"
      "directory it loads lists the new ones, then switches by itself (at its start,\n"
      "a directory reload, even of the version it has, or when the broker says its\n"
      "keys were replaced; a daemon started before opens the new keys then), keeping\n"
      "its store; it keeps the old keys, only to open messages sealed to them,\n"
      "until the longest message lifetime has passed.\n"
      "\n"
      "Options:\n"
      "  --home DIR             the node's home folder\n"
      "  --id ID                the node's id, e.g. gemeente-diemen ([a-z0-9-], at most 32)\n"
      "  --role ROLE            its role, e.g. municipality, police, tax, housing, riec\n"
      "  --org NAME             the organisation's name, e.g. \"Gemeente Diemen\"\n"
      "  --rotate               replace the keys of DIR's node (no --id, --role, --org)\n"
      "  --no-passphrase        leave the key file unencrypted (tests and demos only)\n"
      "  --passphrase-file F    read the new passphrase from F (mode 0600) instead of\n"
      "                         KETEN_PASSPHRASE or the terminal (asked twice)\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static const keten_cli_keygen_command keygen = {
    .usage = keygen_usage,
    .id_example = " (e.g. gemeente-diemen)",
    .rotate = keten_rotate_keygen,
};

static int cmd_keygen(int argc, char **argv)
{
    return keten_cli_keygen_main(&keygen, argc, argv);
}

static const keten_cmdtable_command commands[] = {
    { "keygen", cmd_keygen, "make this node's keys and its enrollment request" },
    { "run", cmd_run, "run the node daemon: connect to the broker, send, receive, witness" },
    { "send", cmd_send, "send a signal or a query to partners (prints the msg_id)" },
    { "inbox", cmd_inbox, "list received messages not yet handled" },
    { "show", cmd_show, "show one received message" },
    { "ack", cmd_ack, "mark a received message as handled" },
    { "sent", cmd_sent, "list the messages this node sent, per recipient's state" },
    { "reply", cmd_reply, "answer a received query (reply) or signal (feedback)" },
    { "status", cmd_status, "the node's state or one message's (exit 3: an unacknowledged alarm)" },
    { "checkpoint", cmd_checkpoint, "print the checkpoint this node keeps as evidence" },
    { "token", cmd_token, "create, list or revoke the tokens of the node's HTTP API" },
    { "alarm", cmd_alarm, "list the node's alarms, or acknowledge one once dealt with" },
};

static const keten_cmdtable_program program = {
    .name = "keten-node",
    .about = "A partner's node of a keten network.\n",
    .footer = NULL,
    .commands = commands,
    .n_commands = sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return keten_cmdtable_main(&program, argc, argv);
}
