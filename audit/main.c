/*
 * keten-audit - the auditors' tool (docs/audit.md):
 * export, verify, replay, count, report and prove what the broker's audit
 * log says, trusting nothing but the network anchor. This file only
 * dispatches to cmd_<verb>().
 */

#include "cli.h"
#include "cmdtable.h"
#include "cmd.h"

static const keten_cmdtable_command commands[] = {
    { "export", cmd_export, "write a broker's audit log as a tlog-tiles export, for auditors" },
    { "verify", cmd_verify, "verify the whole log: tree, records, signatures, checkpoints" },
    { "replay", cmd_replay, "print the exchange history, filtered (text, JSON lines, CSV)" },
    { "stats", cmd_stats, "count exchanges per partner pair, category, month, purpose, rule" },
    { "report", cmd_report, "write a self-contained HTML report with tables and charts" },
    { "prove", cmd_prove, "write a proof bundle for one message (JSON)" },
    { "check-proof", cmd_check_proof, "verify a proof bundle offline, without the database" },
};

static const keten_cmdtable_program program = {
    .name = "keten-audit",
    .about = "The auditors' tool of a keten network: who shared what with whom, when, under\n"
             "which rule and purpose, and proof that no record was changed or removed. It\n"
             "never sees content.\n",
    .footer = "Every command that reads the log takes --db with a broker home or an export\n"
              "made by 'keten-audit export', and opens it read-only. See docs/audit.md.\n",
    .commands = commands,
    .n_commands = sizeof commands / sizeof commands[0],
};

int main(int argc, char **argv)
{
    return keten_cmdtable_main(&program, argc, argv);
}
