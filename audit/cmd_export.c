/*
 * keten-audit export --db BROKER_HOME --out AUDIT_DIR: the audit tables
 * alone, for auditors (docs/audit.md). See auditdb.h for what is copied
 * and how.
 */
#include <getopt.h>
#include <stdio.h>

#include "auditdb.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define CMD "export"

static const char usage_text[]
    = "Usage: keten-audit export --db BROKER_HOME --out AUDIT_DIR [--json]\n"
      "\n"
      "Copy the audit tables of a broker's store - the log (audit-leaf, audit-node),\n"
      "the directory versions and the signed checkpoints - into a new, compacted LMDB\n"
      "store in AUDIT_DIR: what the operator hands to an auditor. Queues, envelopes,\n"
      "msg_ids and notices are never copied. The broker may keep running: the export\n"
      "is one consistent snapshot, read with LMDB's lock.\n"
      "\n"
      "AUDIT_DIR must be new or empty. Its files are readable by everyone (0644) and\n"
      "it has no lock file: auditors open it read-only. Prints the number of records\n"
      "and the root hash of the log exported (compare with 'keten-audit verify').\n"
      "\n"
      "Options:\n"
      "  --db DIR    the broker home (or its store folder)\n"
      "  --out DIR   the new export folder\n"
      "  --json      print the result as JSON\n"
      "  --help      show this help\n"
      "\n"
      "Exit codes: 0 exported, 1 failure (nothing is left behind), 2 usage error.\n";

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "out", required_argument, NULL, 'o' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL, *out = NULL;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
    }
    if (out == NULL) {
        return keten_cli_usage(CMD, "--out AUDIT_DIR is required");
    }
    auditdb *a = NULL;
    int rc = cmd_open_db(CMD, db, &a);
    if (rc != KETEN_EXIT_OK) {
        return rc;
    }
    uint64_t records = 0;
    keten_hash root;
    keten_err e = auditdb_export(a, out, &records, root);
    auditdb_close(&a);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    char hex[2 * KETEN_HASH_BYTES + 1];
    keten_hex(root, KETEN_HASH_BYTES, hex);
    if (json) {
        e = keten_cli_json_print(
            json_pack("{s:s, s:I, s:s}", "out", out, "records", (json_int_t)records, "root", hex));
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    printf("exported %llu records to %s\nroot %s\n", (unsigned long long)records, out, hex);
    return KETEN_EXIT_OK;
}
