/*
 * keten-audit - the auditors' tool (docs/audit.md):
 * export, verify, replay, count, report and prove what the broker's audit
 * log says, trusting nothing but the network anchor. This file only
 * dispatches to cmd_<verb>().
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "util.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "export", cmd_export, "write a broker's audit log as a tlog-tiles export, for auditors" },
    { "verify", cmd_verify, "verify the whole log: tree, records, signatures, checkpoints" },
    { "replay", cmd_replay, "print the exchange history, filtered (text, JSON lines, CSV)" },
    { "stats", cmd_stats, "count exchanges per partner pair, category, month, purpose" },
    { "report", cmd_report, "write a self-contained HTML report with tables and charts" },
    { "prove", cmd_prove, "write a proof bundle for one message (JSON)" },
    { "check-proof", cmd_check_proof, "verify a proof bundle offline, without the database" },
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: keten-audit COMMAND [OPTIONS]\n\n"
        "The auditors' tool of a keten network: who shared what with whom, when, under\n"
        "which rule and purpose, and proof that no record was changed or removed. It\n"
        "never sees content.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f,
        "\nEvery command that reads the log takes --db with a broker home or an export\n"
        "made by 'keten-audit export', and opens it read-only.\n"
        "Run 'keten-audit COMMAND --help' for a command's options.\n"
        "Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failure.\n"
        "See docs/audit.md.\n");
}

int main(int argc, char **argv)
{
    int rc = keten_cli_start("keten-audit");
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
    keten_err e = keten_init();
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "keten-audit: unknown command '%s'\nRun 'keten-audit --help' for the list.\n",
        argv[1]);
    return KETEN_EXIT_USAGE;
}
