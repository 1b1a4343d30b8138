/*
 * keten-audit verify --db BROKER_HOME|AUDIT_DIR --anchor network.pub
 * [--checkpoint FILE...]: the whole verification of verifier.h; the first
 * inconsistency by sequence number and exit 3, or a summary that separates
 * what partners signed from what only the broker claims.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "pb.h"
#include "records.h"
#include "util.h"
#include "verifier.h"

#define CMD "verify"

static const char usage_text[]
    = "Usage: keten-audit verify --db BROKER_HOME|AUDIT_DIR --anchor network.pub\n"
      "                          [--checkpoint FILE]... [--threads N] [--json]\n"
      "\n"
      "Verify the audit log, trusting only the network anchor: every record's hash\n"
      "and the Merkle tree recomputed from the records (RFC 9162) against the stored\n"
      "hash tiles; sequence numbers and times; every directory version as a chain from the\n"
      "anchor; every sender's signature and every recipient's receipt (stored or\n"
      "refused: the signed batch head, once per batch, and the message's leaf and\n"
      "path to its root) with the certificate valid at that time; that each\n"
      "receipt names the message's envelope and the outcome its record states;\n"
      "that each record's sender, recipients, kind,\n"
      "category and purpose are those of the signed header, and its policy rule the\n"
      "one the sharing policy of the directory in force gives; every checkpoint the\n"
      "broker signed (its signature, that it matches the log, its cosignatures); and\n"
      "every checkpoint given with --checkpoint (kept by partner nodes): the evidence\n"
      "from outside the broker. An export is read through a bounds-checked parser;\n"
      "a damaged file is named with its record (exit 3). A broker home is exported\n"
      "into a temporary folder first (read-only; the broker may run).\n"
      "--checkpoint takes a file with one checkpoint note, or with every note a\n"
      "partner node kept ('keten-node checkpoint --all --out FILE' on the node).\n"
      "\n"
      "Prints the first inconsistency with its record's sequence number and exits 3,\n"
      "or a summary: records, tree size, root, time span, checkpoints and witnesses,\n"
      "and which facts partners signed and which are only the broker's claims.\n"
      "\n"
      "Options:\n"
      "  --db DIR            a broker home or an export (keten-audit export)\n"
      "  --anchor FILE       the network's trust anchor (network.pub)\n"
      "  --checkpoint FILE   checkpoint notes kept by a partner (repeatable)\n"
      "  --threads N         signature-checking threads (default: all cores)\n"
      "  --json              print the summary as JSON\n"
      "  --help              show this help\n"
      "\n"
      "Exit codes: 0 verified, 1 failure (unreadable input), 2 usage error,\n"
      "3 verification failed (the log, a signature or a checkpoint is wrong).\n";

static void print_text(const auditdb *a, const verifier_result *r)
{
    char src[PATH_MAX + 64], t1[32], t2[32], root[2 * KETEN_HASH_BYTES + 1];
    auditdb_describe(a, src, sizeof src);
    keten_hex(r->root, KETEN_HASH_BYTES, root);
    printf("The audit log verifies.\n");
    printf("  source             %s\n", src);
    printf("  network            %s\n", r->network);
    if (r->records > 0) {
        printf("  records            %" PRIu64 " (seq 0 to %" PRIu64 ")\n", r->records,
            r->records - 1);
    } else {
        printf("  records            0\n");
    }
    printf("  tree size          %" PRIu64 "\n", r->records);
    printf("  root               %s\n", root);
    if (r->records > 0) {
        keten_time_iso(r->first_time, t1, sizeof t1);
        keten_time_iso(r->last_time, t2, sizeof t2);
        printf("  time span          %s to %s (the broker's clock)\n", t1, t2);
    }
    printf("  directory chain    %" PRIu64 " version(s) installed in the log, verified from the "
           "anchor; latest version %" PRIu64 "\n",
        r->directory_versions, r->directory_version);
    if (r->checkpoints == 0) {
        printf("  checkpoints        none stored\n");
    } else {
        printf("  checkpoints        %" PRIu64 " stored, each signed by the broker's log key and "
               "consistent with the log\n",
            r->checkpoints);
        printf("                     %" PRIu64 " witnessed (cosigned by a quorum of %zu of %zu "
               "partners); the latest witnessed one covers %" PRIu64
               " records, the latest one %" PRIu64 "\n",
            r->checkpoints_witnessed, r->quorum, r->partners, r->witnessed_size,
            r->latest_checkpoint);
    }
    if (r->external == 0) {
        printf(
            "  external evidence  none given: the log is only self-consistent. Its own\n"
            "                     checkpoints and their cosignatures were kept by the broker;\n"
            "                     compare with checkpoints kept by partner nodes\n"
            "                     (--checkpoint FILE) to show that partners saw this history.\n");
    } else {
        printf("  external evidence  %" PRIu64 " checkpoint(s) given, each signed by the broker "
               "and consistent with\n"
               "                     this log: records 0 to %" PRIu64 " are the history partners "
               "saw (up to %zu cosignatures, %" PRIu64 " witnessed)\n",
            r->external, r->external_max_size > 0 ? r->external_max_size - 1 : 0,
            r->external_cosigners, r->external_witnessed);
        if (r->external_max_size < r->records) {
            printf("                     records %" PRIu64 " to %" PRIu64 " are only "
                   "self-consistent so far\n",
                r->external_max_size, r->records - 1);
        }
    }
    printf("  signed by partners (verified):\n");
    printf("    submitted        %" PRIu64 " (each sender's signature over the header and "
           "ciphertext hash)\n",
        r->sender_signatures);
    printf("    receipted        %" PRIu64 " (each recipient's signed receipt: stored)\n",
        r->events[KETEN__EVENT__EVENT_RECEIPTED]);
    printf("    refused          %" PRIu64 " (each recipient's signed receipt: refused, with "
           "its reason)\n",
        r->events[KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT]);
    printf("    receipt batches  %" PRIu64 " recipient signature(s) verified, one per batch "
           "head\n",
        r->receipt_signatures);
    printf("  signed by the administrators:\n");
    printf("    directory-installed %" PRIu64 "\n",
        r->events[KETEN__EVENT__EVENT_DIRECTORY_INSTALLED]);
    printf("  the broker's claims (no partner signed these):\n");
    printf("    delivered %" PRIu64 ", expired %" PRIu64 ", rejected %" PRIu64
           ", node-connected %" PRIu64 ", node-disconnected %" PRIu64 ", auth-failed %" PRIu64
           ",\n    and the time of every record\n",
        r->events[KETEN__EVENT__EVENT_DELIVERED], r->events[KETEN__EVENT__EVENT_EXPIRED],
        r->events[KETEN__EVENT__EVENT_REJECTED], r->events[KETEN__EVENT__EVENT_NODE_CONNECTED],
        r->events[KETEN__EVENT__EVENT_NODE_DISCONNECTED],
        r->events[KETEN__EVENT__EVENT_AUTH_FAILED]);
    printf("  checked in %.2f s with %u signature thread(s)\n", r->seconds, r->threads);
}

static json_t *events_json(const verifier_result *r, bool admins, bool claims)
{
    json_t *o = json_object();
    for (int ev = 1; ev < VERIFIER_EVENTS && o != NULL; ev++) {
        records_evidence what = records_event_evidence(ev);
        if ((what == RECORDS_BROKER_CLAIM && claims)
            || (what == RECORDS_ADMIN_SIGNATURES && admins)) {
            json_object_set_new(o, records_event_name(ev), json_integer((json_int_t)r->events[ev]));
        }
    }
    return o;
}

static json_t *result_json(const auditdb *a, const verifier_result *r)
{
    char src[PATH_MAX + 64], t1[32], t2[32], root[2 * KETEN_HASH_BYTES + 1];
    auditdb_describe(a, src, sizeof src);
    keten_hex(r->root, KETEN_HASH_BYTES, root);
    keten_time_iso(r->first_time, t1, sizeof t1);
    keten_time_iso(r->last_time, t2, sizeof t2);
    if (!r->ok) {
        return json_pack("{s:b, s:s, s:s, s:{s:I, s:b, s:s, s:s}}", "ok", 0, "source", src,
            "network", r->network, "failure", "seq", (json_int_t)r->failure.seq, "about_record",
            !r->failure.no_record, "error", keten_err_str(r->failure.err), "detail",
            r->failure.what);
    }
    return json_pack("{s:b, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:{s:I, s:I},"
                     " s:{s:I, s:I, s:I, s:I, s:I, s:I},"
                     " s:{s:I, s:I, s:I, s:I, s:b},"
                     " s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:i, s:f}",
        "ok", 1, "source", src, "network", r->network, "records", (json_int_t)r->records,
        "tree_size", (json_int_t)r->records, "root", root, "first_time", t1, "last_time", t2,
        "directories", "versions", (json_int_t)r->directory_versions, "latest",
        (json_int_t)r->directory_version, "checkpoints", "stored", (json_int_t)r->checkpoints,
        "witnessed", (json_int_t)r->checkpoints_witnessed, "latest_size",
        (json_int_t)r->latest_checkpoint, "witnessed_size", (json_int_t)r->witnessed_size, "quorum",
        (json_int_t)r->quorum, "partners", (json_int_t)r->partners, "external", "given",
        (json_int_t)r->external, "witnessed", (json_int_t)r->external_witnessed, "max_size",
        (json_int_t)r->external_max_size, "max_cosignatures", (json_int_t)r->external_cosigners,
        "self_consistent_only", r->external == 0, "signed_by_partners", "submitted",
        (json_int_t)r->sender_signatures, "receipted",
        (json_int_t)r->events[KETEN__EVENT__EVENT_RECEIPTED], "refused-by-recipient",
        (json_int_t)r->events[KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT], "receipt_batches",
        (json_int_t)r->receipt_signatures,
        "signed_by_administrators", events_json(r, true, false), "broker_claims",
        events_json(r, false, true), "threads", (int)r->threads, "seconds", r->seconds);
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "anchor", required_argument, NULL, 'a' },
        { "checkpoint", required_argument, NULL, 'c' },
        { "threads", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL, *anchor_path = NULL;
    const char *checkpoints[CMD_CHECKPOINTS_MAX];
    size_t n_checkpoints = 0;
    uint64_t threads = 0;
    bool json = false;
    int c;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'a':
            anchor_path = optarg;
            break;
        case 'c':
            if (n_checkpoints == CMD_CHECKPOINTS_MAX) {
                return keten_cli_usage(CMD, "at most %d --checkpoint files", CMD_CHECKPOINTS_MAX);
            }
            checkpoints[n_checkpoints++] = optarg;
            break;
        case 't':
            if (!keten_cli_parse_uint(optarg, 1, VERIFIER_THREADS_MAX, &threads)) {
                return keten_cli_usage(
                    CMD, "--threads must be a number from 1 to %d", VERIFIER_THREADS_MAX);
            }
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
    if (db == NULL) {
        return keten_cli_usage(CMD, "--db BROKER_HOME|AUDIT_DIR is required");
    }
    Keten__Anchor *anchor = NULL;
    auditdb *a = NULL;
    int rc = cmd_load_anchor(CMD, anchor_path, &anchor);
    if (rc == KETEN_EXIT_OK) {
        rc = cmd_open_db(CMD, db, &a);
    }
    if (rc != KETEN_EXIT_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&anchor);
        return rc;
    }
    verifier_opts vo = {
        .anchor = anchor,
        .checkpoints = checkpoints,
        .n_checkpoints = n_checkpoints,
        .threads = (unsigned)threads,
        .progress = isatty(STDERR_FILENO) == 1,
    };
    verifier_result *res = calloc(1, sizeof *res);
    keten_err e
        = res != NULL ? verifier_run(a, &vo, res) : keten_err_set(KETEN_ERR_NOMEM, "verifying");
    if (e != KETEN_OK) {
        rc = keten_cli_error(e);
    } else if (!res->ok) {
        char at[VERIFIER_AT_MAX];
        verifier_failure_at(&res->failure, at);
        fprintf(stderr, "keten-audit: verification failed%s: %s\n", at, res->failure.what);
        if (json) {
            keten_err je = keten_cli_json_print(result_json(a, res));
            (void)je;
        }
        rc = KETEN_EXIT_VERIFY;
    } else if (json) {
        e = keten_cli_json_print(result_json(a, res));
        rc = e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    } else {
        print_text(a, res);
        rc = KETEN_EXIT_OK;
    }
    free(res);
    auditdb_close(&a);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    return rc;
}
