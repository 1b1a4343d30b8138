/*
 * keten-keys - the administrators' tool (docs/administration.md): the
 * network's trust anchor, enrollment, revocation, the sharing policy and
 * signed directory versions. This file only dispatches to cmd_<verb>().
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "admin-keygen", cmd_admin_keygen, "make one administrator's key (on their own machine)" },
    { "init", cmd_init, "create the network: the anchor network.pub and the ADMIN folder" },
    { "register", cmd_register, "register categories and purposes signals may carry" },
    { "unregister", cmd_unregister, "remove a registered value from the draft (a typo)" },
    { "approve", cmd_approve, "approve a node's request into the next directory" },
    { "revoke", cmd_revoke, "revoke a node's certificate" },
    { "policy", cmd_policy, "edit, list and explain the sharing rules" },
    { "set-admins", cmd_set_admins, "change the administrators and threshold" },
    { "publish", cmd_publish, "produce the next directory version, with a first signature" },
    { "sign", cmd_sign, "add an administrator's signature to a published directory" },
    { "status", cmd_status, "what the next publish changes; how the last version stands" },
    { "partners", cmd_partners, "list the partners: id, role, organisation, serial, state" },
    { "show", cmd_show, "print a directory (or an anchor) and verify it" },
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: keten-keys COMMAND [OPTIONS]\n\n"
        "The administrators' tool of a keten network.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f,
        "\nEach administrator makes a key (admin-keygen) on their own machine; init\n"
        "creates the network from their public keys. Then register, approve, revoke\n"
        "and policy edit the draft of the next directory version in the ADMIN folder,\n"
        "status and partners say what it holds and changes, publish signs it as the\n"
        "next version and sign adds the other administrators' signatures until the\n"
        "threshold is met.\n"
        "\nRun 'keten-keys COMMAND --help' for a command's options.\n"
        "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure.\n");
}

int main(int argc, char **argv)
{
    int rc = keten_cli_start("keten-keys");
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
        fprintf(stderr, "keten-keys: libsodium could not be initialised\n");
        return KETEN_EXIT_FAILURE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "keten-keys: unknown command '%s'\nRun 'keten-keys --help' for the list.\n",
        argv[1]);
    return KETEN_EXIT_USAGE;
}
