/*
 * keten-broker backup - a consistent, compacted copy of the broker's store
 * while the broker runs (store_backup() in store.h), and what the copy holds.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "store.h"
#include "util.h"

static const char backup_usage[]
    = "Usage: keten-broker backup --home DIR --out PATH [--json]\n"
      "\n"
      "Copy the broker's store (DIR/store: the audit log, the messages and\n"
      "envelopes not yet receipted, the directory versions and checkpoints) into\n"
      "PATH, a new or empty directory, as one consistent, compacted LMDB copy\n"
      "(PATH/data.mdb). It may run while the broker runs: the copy is one read\n"
      "transaction. Then the copy is opened and what it holds is printed: the\n"
      "number of audit records and the log's root hash, which a checkpoint of\n"
      "that size must name.\n"
      "\n"
      "The broker's key file (DIR/identity.secret) is not part of the copy: back it\n"
      "up once, apart from its passphrase. To restore, stop the broker and put\n"
      "PATH/data.mdb in DIR/store; to check a copy, export it with keten-audit\n"
      "export --db PATH --out AUDIT_DIR and run keten-audit verify on AUDIT_DIR\n"
      "(see docs/operations.md).\n"
      "\n"
      "Options:\n"
      "  --home DIR     the broker's home (as given to 'keten-broker run')\n"
      "  --out PATH     where the copy goes: a new or empty directory (never overwritten)\n"
      "  --json         print the result as JSON\n"
      "  --help         show this help\n";

int cmd_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "out", required_argument, NULL, 'o' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *out = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(backup_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("backup", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("backup", "unexpected argument '%s'", argv[optind]);
    }
    if (home == NULL || home[0] == '\0' || out == NULL || out[0] == '\0') {
        return keten_cli_usage("backup", "--home DIR and --out PATH are required");
    }
    store_backup_info info;
    keten_err e = store_backup(home, out, &info);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    char root[2 * KETEN_HASH_BYTES + 1];
    keten_hex(info.root, KETEN_HASH_BYTES, root);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "out", json_string(out));
        json_object_set_new(o, "bytes", json_integer((json_int_t)info.bytes));
        json_object_set_new(o, "records", json_integer((json_int_t)info.records));
        json_object_set_new(o, "root", json_string(root));
        json_object_set_new(o, "messages", json_integer((json_int_t)info.messages));
        json_object_set_new(o, "envelopes", json_integer((json_int_t)info.envelopes));
        json_object_set_new(o, "directories", json_integer((json_int_t)info.directories));
        json_object_set_new(o, "checkpoints", json_integer((json_int_t)info.checkpoints));
        e = keten_cli_json_print(o);
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    printf("backup written to %s/data.mdb (%llu bytes, compacted)\n", out,
        (unsigned long long)info.bytes);
    printf("audit records: %llu\n", (unsigned long long)info.records);
    printf("log root:      %s\n", root);
    printf("messages held: %llu (envelopes %llu)\n", (unsigned long long)info.messages,
        (unsigned long long)info.envelopes);
    printf("directories:   %llu\n", (unsigned long long)info.directories);
    printf("checkpoints:   %llu\n", (unsigned long long)info.checkpoints);
    return KETEN_EXIT_OK;
}
