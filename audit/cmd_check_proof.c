/*
 * keten-audit check-proof FILE --anchor network.pub: verify a proof bundle
 * offline (proof.h), without the database.
 */
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "filekind.h"
#include "pb.h"
#include "proof.h"
#include "records.h"
#include "util.h"

#define CMD "check-proof"

static const char usage_text[]
    = "Usage: keten-audit check-proof FILE --anchor network.pub [--json]\n"
      "\n"
      "Verify a proof bundle made by 'keten-audit prove', offline: the directory\n"
      "versions it carries verify as a chain from the anchor; the log key is the\n"
      "broker's in the version the checkpoint names; the checkpoint's signature\n"
      "verifies with it; every record hashes to its leaf and its audit path leads to\n"
      "the checkpoint's root (RFC 9162); every record belongs to the message, its\n"
      "sender's signature verifies, its policy rule is the one the sharing policy of\n"
      "that directory version gives, and every receipt or refusal by a recipient\n"
      "verifies (the recipient's signed batch head, the message's leaf and its path\n"
      "to the head's root, the envelope hash, the outcome). Prints the message's\n"
      "records and how many partners cosigned the checkpoint. Bundles are format v2;\n"
      "a version 1 bundle (from before receipt batches) is refused, and so is a\n"
      "field the format does not have, a key given twice or a NUL character.\n"
      "\n"
      "Options:\n"
      "  --anchor FILE   the network's trust anchor (network.pub)\n"
      "  --json          print the result as JSON\n"
      "  --help          show this help\n"
      "\n"
      "Exit codes: 0 the proof holds, 1 failure (unreadable file), 2 usage error,\n"
      "3 the proof does not hold (changed, forged or not a bundle).\n";

/* The message as its sender signed it (the submitted record), if the
 * bundle holds that record. */
static void print_message(const proof_message *m)
{
    if (!m->known) {
        printf("  (no submitted record: the broker never accepted this message; the records "
               "below are its refused attempts)\n");
        return;
    }
    char t[40];
    keten_time_iso(m->created_at, t, sizeof t);
    printf("  from         %s (the sender's signature on the header verified)\n", m->sender);
    printf("  to           ");
    for (size_t i = 0; i < m->n_recipients; i++) {
        printf("%s%s", i > 0 ? ", " : "", m->recipients[i]);
    }
    printf("\n");
    printf("  what         %s, category %s, purpose %s\n", records_kind_name(m->kind), m->category,
        m->purpose);
    printf("  created      %s (the sender's clock, signed)\n", t);
    printf("  allowed by   policy rule %u (the broker's decision, as it recorded it; the sharing "
           "policy of its directory version gives the same)\n",
        m->rule);
}

/* The recipients of m an expiry names (bits of mask), comma-separated. */
static void print_expired_for(const proof_message *m, uint64_t mask)
{
    const char *sep = "";
    for (size_t i = 0; i < m->n_recipients; i++) {
        if ((mask & (UINT64_C(1) << i)) != 0) {
            printf("%s%s", sep, m->recipients[i]);
            sep = ", ";
        }
    }
}

static json_t *expired_for_json(const proof_message *m, uint64_t mask)
{
    json_t *a = json_array();
    for (size_t i = 0; i < m->n_recipients && a != NULL; i++) {
        if ((mask & (UINT64_C(1) << i)) != 0) {
            json_array_append_new(a, json_string(m->recipients[i]));
        }
    }
    return a;
}

static void print_text(const proof_result *r)
{
    char root[2 * KETEN_HASH_BYTES + 1];
    keten_hex(r->root, KETEN_HASH_BYTES, root);
    printf("The proof holds.\n");
    printf("  network      %s\n", r->network);
    printf("  message      %s\n", r->msg_id);
    print_message(&r->message);
    printf("  checkpoint   tree size %" PRIu64 ", root %s, signed by broker '%s' (directory "
           "version %" PRIu64 ", verified from the anchor)\n",
        r->tree_size, root, r->log_key_name, r->directory_version);
    printf("  witnesses    %zu partner cosignature(s), quorum %zu: %s\n", r->cosigners, r->quorum,
        r->witnessed ? "witnessed" : "NOT witnessed");
    printf(
        "  records      %zu included in that tree (times are the broker's clock):\n", r->n_records);
    for (size_t i = 0; i < r->n_records; i++) {
        const proof_record *p = &r->records[i];
        char t[40];
        keten_time_iso(p->time, t, sizeof t);
        printf("    leaf %-8" PRIu64 " %s  %-10s %s%s", p->leaf_index, t,
            records_event_name(p->event), p->node, p->node[0] != '\0' ? "  " : "");
        if (p->expired_for != 0) {
            printf("for ");
            print_expired_for(&r->message, p->expired_for);
            printf("  ");
        }
        switch (p->event) {
        case KETEN__EVENT__EVENT_SUBMITTED:
            printf("(sender's signature verified)\n");
            break;
        case KETEN__EVENT__EVENT_RECEIPTED:
            printf("(stored: recipient's signed receipt batch verified)\n");
            break;
        case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
            printf("(refused, reason %s: recipient's signed receipt batch verified)\n",
                records_reason_name(p->reason));
            break;
        case KETEN__EVENT__EVENT_REJECTED:
            printf("(the broker's claim: refused, reason %s", records_reason_name(p->reason));
            if (p->reason == KETEN__REASON__REASON_POLICY && p->rule != 0) {
                printf(", rule %u", p->rule);
            } else if (p->reason == KETEN__REASON__REASON_POLICY) {
                printf(", the default deny (rule 0)");
            }
            printf(")\n");
            break;
        default:
            printf("(the broker's claim)\n");
            break;
        }
    }
}

static json_t *message_json(const proof_message *m)
{
    if (!m->known) {
        return json_null();
    }
    json_t *to = json_array();
    for (size_t i = 0; i < m->n_recipients && to != NULL; i++) {
        json_array_append_new(to, json_string(m->recipients[i]));
    }
    char t[40];
    keten_time_iso(m->created_at, t, sizeof t);
    return json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:I}", "sender", m->sender, "recipients",
        to != NULL ? to : json_null(), "kind", records_kind_name(m->kind), "category", m->category,
        "purpose", m->purpose, "created_at", t, "rule", (json_int_t)m->rule);
}

static json_t *result_json(const proof_result *r)
{
    char root[2 * KETEN_HASH_BYTES + 1];
    keten_hex(r->root, KETEN_HASH_BYTES, root);
    json_t *recs = json_array();
    for (size_t i = 0; i < r->n_records && recs != NULL; i++) {
        char t[40];
        keten_time_iso(r->records[i].time, t, sizeof t);
        json_array_append_new(recs,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:o}", "leaf_index",
                (json_int_t)r->records[i].leaf_index, "event",
                records_event_name(r->records[i].event), "node", r->records[i].node, "reason",
                records_reason_name(r->records[i].reason), "time", t, "rule",
                (json_int_t)r->records[i].rule, "expired_for",
                expired_for_json(&r->message, r->records[i].expired_for)));
    }
    return json_pack("{s:b, s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:I, s:I, s:I, s:b, s:I, s:o}", "ok",
        1, "format", PROOF_FORMAT, "network", r->network, "msg_id", r->msg_id, "message",
        message_json(&r->message), "tree_size", (json_int_t)r->tree_size, "root", root,
        "log_key_name", r->log_key_name, "directory_version", (json_int_t)r->directory_version,
        "cosignatures", (json_int_t)r->cosigners, "quorum", (json_int_t)r->quorum, "witnessed",
        r->witnessed, "receipt_batches", (json_int_t)r->receipt_heads, "records", recs);
}

int cmd_check_proof(int argc, char **argv)
{
    static const struct option opts[] = {
        { "anchor", required_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *anchor_path = NULL;
    bool json = false;
    int c, rc;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            anchor_path = optarg;
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
    if (optind + 1 != argc) {
        return keten_cli_usage(CMD, optind >= argc ? "FILE is required" : "one FILE only");
    }
    const char *path = argv[optind];
    Keten__Anchor *anchor = NULL;
    if ((rc = cmd_load_anchor(CMD, anchor_path, &anchor)) != KETEN_EXIT_OK) {
        return rc;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    char what[256];
    keten_err e = filekind_of_path(path, what, sizeof what) == FILEKIND_FOLDER
        ? keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is %s, not a proof bundle: give the JSON file written by 'keten-audit prove "
            "--db DB MSG_ID --out FILE'",
            path, what)
        : keten_file_read(path, PROOF_MAX, &buf, &len);
    if (e != KETEN_OK) {
        keten_pb_free((ProtobufCMessage **)(void *)&anchor);
        return keten_cli_error(e);
    }
    /* Another keten file than a bundle (a checkpoint note, a directory, a
     * key file) or an empty one: the wrong file, not a proof that fails. */
    filekind_kind kind = filekind_of_bytes(buf, len, what, sizeof what);
    if (kind != FILEKIND_UNKNOWN && kind != FILEKIND_BUNDLE) {
        sodium_memzero(buf, len); /* it may be a secret key file */
        free(buf);
        keten_pb_free((ProtobufCMessage **)(void *)&anchor);
        return keten_cli_error(keten_err_set(KETEN_ERR_WRONG_TYPE,
            "%s is %s, not a proof bundle: give the JSON file written by 'keten-audit prove "
            "--db DB MSG_ID --out FILE'",
            path, what));
    }
    proof_result *res = calloc(1, sizeof *res);
    if (res == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "checking the bundle");
        rc = keten_cli_error(e);
    } else if ((e = proof_check(buf, len, anchor, res)) != KETEN_OK) {
        /* Anything wrong with the evidence is a verification failure. */
        if (e == KETEN_ERR_NOMEM) {
            rc = keten_cli_error(e);
        } else {
            fprintf(stderr, "keten-audit: the proof in %s does not hold: %s: %s\n", path,
                keten_err_str(e), keten_err_detail());
            rc = KETEN_EXIT_VERIFY;
        }
    } else if (json) {
        e = keten_cli_json_print(result_json(res));
        rc = e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    } else {
        print_text(res);
        rc = KETEN_EXIT_OK;
    }
    free(res);
    free(buf);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    return rc;
}
