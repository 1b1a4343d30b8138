/*
 * keten-audit export --db BROKER_HOME --out AUDIT_DIR: the audit
 * log as a tlog-tiles export, for auditors (docs/audit.md). See
 * brokerstore.h for what is read and written.
 */
#include <getopt.h>
#include <stdio.h>

#include "brokerstore.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define CMD "export"

static const char usage_text[]
    = "Usage: keten-audit export --db BROKER_HOME --out AUDIT_DIR [--json]\n"
      "\n"
      "Write the audit log of a broker's store as a C2SP tlog-tiles export in\n"
      "AUDIT_DIR: the latest signed checkpoint (checkpoint), the hash tiles (tile/L/N),\n"
      "the records in entry bundles (tile/entries/N), and keten's files: every\n"
      "directory version (keten/directories), every stored checkpoint with its\n"
      "cosignatures (keten/checkpoints) and the manifest (keten/manifest). This is what\n"
      "the operator hands to an auditor; queues, envelopes, msg_ids and notices are\n"
      "never read. The broker may keep running: the export is one consistent\n"
      "snapshot, read with LMDB's lock (run as the broker's user).\n"
      "\n"
      "export is the only command of keten-audit that opens an LMDB store, and only\n"
      "the broker's own, read-only. Every other command reads an export through a\n"
      "bounds-checked reader (given a broker home, it exports it to a temporary\n"
      "folder first). Give export only your own store: LMDB is not made for files\n"
      "from others. An export in the old LMDB format is refused by the other commands;\n"
      "the operator who made it may convert it with export --db OLD --out NEW.\n"
      "\n"
      "AUDIT_DIR must be new or empty. Its files are readable by everyone (0644).\n"
      "Prints the number of records and the root hash of the log exported (compare\n"
      "with 'keten-audit verify'). The layout is described in docs/audit.md.\n"
      "\n"
      "Options:\n"
      "  --db DIR    the broker home (the folder that holds store/), or the operator's\n"
      "              own bare store folder: a backup made by 'keten-broker backup'\n"
      "  --out DIR   the new export folder\n"
      "  --json      print the result as JSON\n"
      "  --help      show this help\n"
      "\n"
      "Exit codes: 0 exported, 1 failure (nothing is left behind), 2 usage error,\n"
      "3 the broker's log or tree is damaged (a record or hash missing or altered).\n";

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
    if (db == NULL) {
        return keten_cli_usage(CMD, "--db BROKER_HOME is required");
    }
    brokerstore_result res;
    keten_err e = brokerstore_export(db, BROKERSTORE_HOME | BROKERSTORE_BARE, out, true, &res);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    if (res.nolock) {
        keten_cli_warn("the store of %s was read without LMDB's lock (lock.mdb is absent or not "
                       "writable), which is safe only while no broker writes to it (stopped broker, "
                       "copy or backup); for a running broker run as its user",
            db);
    }
    uint64_t records = res.records;
    const uint8_t *root = res.root;
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
