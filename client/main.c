/*
 * keten-node - a partner's node and its local command line (keten-node(8)).
 * This file parses the subcommand and dispatches to cmd_<verb>().
 *
 *   keten-node keygen --home DIR --id ID --role ROLE --org NAME
 *                     [--no-passphrase] [--passphrase-file F] [--json]
 *   keten-node keygen --rotate --home DIR [--passphrase-file F] [--json]
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "keten.h"
#include "rotate.h"
#include "util.h"

static const char keygen_usage[] =
    "Usage: keten-node keygen --home DIR --id ID --role ROLE --org NAME\n"
    "                         [--no-passphrase] [--passphrase-file F] [--json]\n"
    "       keten-node keygen --rotate --home DIR [--passphrase-file F] [--json]\n"
    "\n"
    "Make this node's keys (signing, encryption, transport) in DIR, which is\n"
    "created (mode 0700) if needed: DIR/identity.secret (the secret keys,\n"
    "mode 0600, protected by a passphrase; never overwritten) and\n"
    "DIR/identity.request (the enrollment request with proof of possession).\n"
    "Hand the request to the network's administrators (keten-keys approve) and\n"
    "read them its sha256 by another channel. The secret keys never leave DIR.\n"
    "\n"
    "With --rotate: new keys for the node of DIR (same id, role and organisation),\n"
    "written to DIR/identity.next.secret (same passphrase as identity.secret)\n"
    "and DIR/identity.next.request, for the administrators to approve with\n"
    "keten-keys approve --rotate. The node goes on with its current keys until a\n"
    "directory it loads lists the new ones, then switches by itself (at its start,\n"
    "a directory reload, or when the broker says its keys were replaced), keeping\n"
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

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "id", required_argument, NULL, 'i' },
        { "role", required_argument, NULL, 'r' },
        { "org", required_argument, NULL, 'o' },
        { "no-passphrase", no_argument, NULL, 'P' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "rotate", no_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    keten_cli_keygen_opts o = { 0 };
    bool rotate = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            o.home = optarg;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'r':
            o.role = optarg;
            break;
        case 'o':
            o.org = optarg;
            break;
        case 'P':
            o.no_passphrase = true;
            break;
        case 'p':
            o.passfile = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'R':
            rotate = true;
            break;
        case 'h':
            fputs(keygen_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("keygen", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("keygen", "unexpected argument '%s'", argv[optind]);
    }
    if (o.home == NULL || o.home[0] == '\0') {
        return keten_cli_usage("keygen", "--home DIR is required");
    }
    if (rotate) {
        if (o.id != NULL || o.role != NULL || o.org != NULL || o.no_passphrase) {
            return keten_cli_usage("keygen",
                "--rotate keeps the node's id, role, organisation and passphrase: give only "
                "--home (and --passphrase-file)");
        }
        keten_err e = keten_rotate_keygen(o.home, o.passfile, o.json);
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    if (o.id == NULL || o.role == NULL || o.org == NULL) {
        return keten_cli_usage("keygen", "--id, --role and --org are required");
    }
    if (!keten_name_valid(o.id)) {
        return keten_cli_usage("keygen", "--id '%s' is not a node id: use 1 to %d of a-z, 0-9 "
                                         "and '-' (e.g. gemeente-diemen)",
            o.id, KETEN_NAME_MAX);
    }
    if (!keten_name_valid(o.role)) {
        return keten_cli_usage("keygen", "--role '%s' is not a role: use 1 to %d of a-z, 0-9 "
                                         "and '-' (e.g. municipality)",
            o.role, KETEN_NAME_MAX);
    }
    if (strcmp(o.role, "broker") == 0) {
        return keten_cli_usage("keygen", "role broker is reserved for the broker: use "
                                         "keten-broker keygen");
    }
    if (o.org[0] == '\0' || strlen(o.org) > KETEN_ORG_MAX) {
        return keten_cli_usage("keygen", "--org must be 1 to %d bytes", KETEN_ORG_MAX);
    }
    if (o.no_passphrase && o.passfile != NULL) {
        return keten_cli_usage("keygen", "--no-passphrase and --passphrase-file exclude each "
                                         "other");
    }
    keten_err e = keten_cli_keygen(&o);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "keygen", cmd_keygen, "make this node's keys and its enrollment request" },
    { "run", cmd_run, "run the node daemon: connect to the broker, send, receive, witness" },
    { "send", cmd_send, "send a signal or a query to partners (prints the msg_id)" },
    { "inbox", cmd_inbox, "list received messages not yet handled" },
    { "show", cmd_show, "show one received message" },
    { "ack", cmd_ack, "mark a received message as handled" },
    { "reply", cmd_reply, "answer a received query (reply) or signal (feedback)" },
    { "status", cmd_status, "the node's state or one message's (exit 3 on alarms)" },
    { "checkpoint", cmd_checkpoint, "print the checkpoint this node keeps as evidence" },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: keten-node COMMAND [OPTIONS]\n\nA partner's node of a keten "
               "network.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nRun 'keten-node COMMAND --help' for a command's options.\n"
               "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure.\n");
}

int main(int argc, char **argv)
{
    int rc = keten_cli_start("keten-node");
    if (rc != 0) {
        return rc;
    }
    if (argc < 2) {
        usage(stderr);
        return KETEN_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return KETEN_EXIT_OK;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "keten-node: libsodium could not be initialised\n");
        return KETEN_EXIT_FAILURE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "keten-node: unknown command '%s'\nRun 'keten-node --help' for the list.\n",
        argv[1]);
    return KETEN_EXIT_USAGE;
}
