/*
 * keten-broker - the central broker daemon.
 * This file parses the subcommand and dispatches to cmd_<verb>().
 *
 *   keten-broker keygen --home DIR [--id broker] [--org NAME]
 *                       [--no-passphrase] [--passphrase-file F] [--json]
 *   keten-broker run    --home DIR --anchor FILE --directory FILE --listen ENDPOINT ...
 *                       (cmd_run.c)
 *   keten-broker backup --home DIR --out PATH [--json]   (cmd_backup.c)
 */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "keten.h"
#include "util.h"

#define BROKER_ROLE "broker"
#define BROKER_ID_DEFAULT "broker"
#define BROKER_ORG_DEFAULT "keten broker"

static const char keygen_usage[] =
    "Usage: keten-broker keygen --home DIR [--id ID] [--org NAME]\n"
    "                           [--no-passphrase] [--passphrase-file F] [--json]\n"
    "\n"
    "Make the broker's keys (signing, encryption, transport, and the log key\n"
    "that signs checkpoints and acknowledgements) in DIR, which is created\n"
    "(mode 0700) if needed: DIR/identity.secret (mode 0600, protected by a\n"
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

static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "id", required_argument, NULL, 'i' },
        { "org", required_argument, NULL, 'o' },
        { "no-passphrase", no_argument, NULL, 'P' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    keten_cli_keygen_opts o = {
        .id = BROKER_ID_DEFAULT,
        .role = BROKER_ROLE,
        .org = BROKER_ORG_DEFAULT,
    };
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
    if (!keten_name_valid(o.id)) {
        return keten_cli_usage("keygen", "--id '%s' is not a node id: use 1 to %d of a-z, 0-9 "
                                         "and '-'",
            o.id, KETEN_NAME_MAX);
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
    { "keygen", cmd_keygen, "make the broker's keys and its enrollment request" },
    { "run", cmd_run, "run the broker daemon" },
    { "backup", cmd_backup, "copy the store consistently while the broker runs" },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: keten-broker COMMAND [OPTIONS]\n\nThe central broker of a keten "
               "network.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nRun 'keten-broker COMMAND --help' for a command's options.\n"
               "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure.\n");
}

int main(int argc, char **argv)
{
    int rc = keten_cli_start("keten-broker");
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
        fprintf(stderr, "keten-broker: libsodium could not be initialised\n");
        return KETEN_EXIT_FAILURE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr,
        "keten-broker: unknown command '%s'\nRun 'keten-broker --help' for the list.\n", argv[1]);
    return KETEN_EXIT_USAGE;
}
