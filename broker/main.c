/*
 * keten-broker - the central broker daemon.
 * This file lists the commands (lib/cmdtable.h); each is a cmd_<verb>().
 *
 *   keten-broker keygen --home DIR [--id broker] [--org NAME]
 *                       [--no-passphrase] [--passphrase-file F] [--json]
 *   keten-broker run    --home DIR --anchor FILE --directory FILE --listen ENDPOINT ...
 *                       (cmd_run.c)
 *   keten-broker backup --home DIR --out PATH [--json]   (cmd_backup.c)
 */
#include "cli.h"
#include "cmdtable.h"
#include "cmd.h"

static const char keygen_usage[]
    = "Usage: keten-broker keygen --home DIR [--id ID] [--org NAME]\n"
      "                           [--no-passphrase] [--passphrase-file F] [--json]\n"
      "\n"
      "Make the broker's keys (signing, encryption, transport, and the log key\n"
      "that signs checkpoints and acknowledgements) in DIR, which is created\n"
      "(mode 0700) if needed; its parent folder must exist. It holds\n"
      "DIR/identity.secret (mode 0600, protected by a\n"
      "passphrase; never overwritten) and DIR/identity.request (the enrollment\n"
      "request, role broker, with proof of possession for both signing keys).\n"
      "Hand the request to the network's administrators (keten-keys approve).\n"
      "\n"
      "Options:\n"
      "  --home DIR             the broker's home folder\n"
      "  --id ID                the broker's node id (default broker)\n"
      "  --org NAME             the operating organisation (default \"keten broker\")\n"
      "  --no-passphrase        leave the key file unencrypted (tests and demos only)\n"
      "  --passphrase-file F    read the new passphrase from F (mode 0600) instead of\n"
      "                         KETEN_PASSPHRASE or the terminal (asked twice)\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static const keten_cli_keygen_command keygen = {
    .usage = keygen_usage,
    .role = "broker",
    .id_default = "broker",
    .org_default = "keten broker",
};

static int cmd_keygen(int argc, char **argv)
{
    return keten_cli_keygen_main(&keygen, argc, argv);
}

static const keten_cmdtable_command commands[] = {
    { "keygen", cmd_keygen, "make the broker's keys and its enrollment request" },
    { "run", cmd_run, "run the broker daemon" },
    { "backup", cmd_backup, "copy the store consistently while the broker runs" },
};

static const keten_cmdtable_program program = {
    .name = "keten-broker",
    .about = "The central broker of a keten network.\n",
    .footer = NULL,
    .commands = commands,
    .n_commands = sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return keten_cmdtable_main(&program, argc, argv);
}
