/*
 * keten-audit prove --db ... MSG_ID [--out FILE]: a proof bundle (proof.h)
 * for every record of one message, leading to the stored checkpoint with the
 * most cosignatures among those that cover it (ties: the latest).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "proof.h"
#include "util.h"

#define CMD "prove"

static const char usage_text[]
    = "Usage: keten-audit prove --db BROKER_HOME|AUDIT_DIR MSG_ID [--out FILE]\n"
      "\n"
      "Write a proof bundle (format v2) for one message: a JSON document with, for\n"
      "each of its records (submitted, delivered, receipted, refused-by-recipient,\n"
      "expired, rejected), the exact record bytes (receipted and refused records hold\n"
      "the recipient's signed receipt batch head, the message's leaf and its path),\n"
      "its leaf index and its RFC 9162 audit path to a checkpoint the broker signed;\n"
      "that checkpoint (a C2SP signed note, with the partners' cosignatures); the\n"
      "broker's log key; and the directory versions that tie the log key and the\n"
      "partners' certificates to the network anchor. Anyone can check it without\n"
      "the database:\n"
      "'keten-audit check-proof FILE --anchor network.pub', or any RFC 9162 / C2SP\n"
      "implementation (fields in docs/audit.md).\n"
      "\n"
      "The checkpoint: among the stored checkpoints that cover every record of the\n"
      "message, the one with the most cosignatures (the strongest evidence); of\n"
      "those with as many, the latest. It need not be the latest checkpoint.\n"
      "\n"
      "Options:\n"
      "  --db DIR     a broker home or an export\n"
      "  --out FILE   write the bundle there (mode 0644) instead of standard output\n"
      "  --help       show this help\n"
      "\n"
      "Exit codes: 0 written, 1 failure (no such message, or no checkpoint covers it\n"
      "yet), 2 usage error, 3 the log does not match its own checkpoint.\n";

int cmd_prove(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "out", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL, *out = NULL;
    int c, rc;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (optind + 1 != argc) {
        return keten_cli_usage(CMD, optind >= argc ? "MSG_ID is required" : "one MSG_ID only");
    }
    uint8_t msg_id[KETEN_MSG_ID_BYTES];
    if (!cmd_parse_msg_id(argv[optind], msg_id)) {
        return keten_cli_usage(CMD, "MSG_ID '%s' is not 32 hex characters", argv[optind]);
    }
    if ((rc = cmd_check_out_file(out, "proof.json")) != KETEN_EXIT_OK) {
        return rc;
    }
    auditdb *a = NULL;
    if ((rc = cmd_open_db(CMD, db, &a)) != KETEN_EXIT_OK) {
        return rc;
    }
    json_t *bundle = NULL;
    keten_err e = proof_build(a, msg_id, &bundle);
    auditdb_close(&a);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    char *text = json_dumps(bundle, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(bundle);
    if (text == NULL) {
        return keten_cli_error(keten_err_set(KETEN_ERR_NOMEM, "formatting the bundle"));
    }
    size_t len = strlen(text);
    if (out != NULL) {
        e = keten_file_write(out, text, len, 0644, false);
        if (e == KETEN_OK) {
            fprintf(stderr, "keten-audit: wrote the proof bundle to %s\n", out);
        }
    } else if (fwrite(text, 1, len, stdout) != len || fputc('\n', stdout) == EOF
        || fflush(stdout) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "writing the bundle to standard output failed");
    }
    free(text);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
