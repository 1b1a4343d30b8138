/*
 * keten-audit replay --db ... [filters] [--format text|jsonl|csv]: the
 * exchange history in log order; with --msg, the whole life of one message
 * per recipient.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "dirinfo.h"
#include "pb.h"
#include "records.h"
#include "render.h"
#include "sigcheck.h"
#include "util.h"

#define CMD "replay"

static const char usage_text[]
    = "Usage: keten-audit replay --db BROKER_HOME|AUDIT_DIR [--from T] [--to T]\n"
      "                          [--node ID] [--category C] [--purpose P] [--msg MSG_ID]\n"
      "                          [--format text|jsonl|csv] [--json]\n"
      "\n"
      "Print the exchange history in log order: submitted messages (who sent which\n"
      "category to whom, for which purpose, under which policy rule), deliveries,\n"
      "receipts and refusals by recipients (with the recipient's reason), expiries,\n"
      "rejected attempts (with the reason and the deciding rule),\n"
      "connections and authentication failures, directory versions. Never content.\n"
      "Each record says what backs it: the sender's or recipient's signature, the\n"
      "administrators' signatures, or only the broker's claim. Run 'keten-audit\n"
      "verify' first: replay reads the log as it is.\n"
      "\n"
      "With --msg, the whole life of one message: submitted, then per recipient\n"
      "delivered, receipted, refused by the recipient (with its reason) or expired,\n"
      "with its rule and purpose.\n"
      "\n"
      "Options:\n"
      "  --db DIR          a broker home or an export\n"
      "  --from T          records at or after T (ISO 8601 UTC, e.g.\n"
      "                    2026-01-01T00:00:00Z, or ms since the epoch; the broker's clock)\n"
      "  --to T            records before T\n"
      "  --node ID         records whose sender, recipient or node is ID, and\n"
      "                    authentication failures of a key any certificate of ID\n"
      "                    ever had (also a revoked or rotated one)\n"
      "  --category C      messages of category C (and their deliveries, receipts, expiries)\n"
      "  --purpose P       messages of purpose P (likewise)\n"
      "  --msg MSG_ID      one message (32 hex characters)\n"
      "  --format F        text (default), jsonl (one JSON object per line) or csv\n"
      "                    (RFC 4180, with a header line)\n"
      "  --json            the same as --format jsonl\n"
      "  --help            show this help\n"
      "\n"
      "Exit codes: 0 printed, 1 failure (e.g. --msg not in the log), 2 usage error,\n"
      "3 the log is damaged (run verify).\n";

/* One recipient's outcome, for the life of a message. */
typedef struct fate {
    char id[KETEN_NAME_MAX + 1];
    uint64_t delivered_seq, receipted_seq, refused_seq, expired_seq; /* UINT64_MAX: none */
    uint64_t delivered_at, receipted_at, refused_at, expired_at, received_at;
    bool has_received;
    int reason; /* refused: the recipient's reason */
} fate;

typedef struct replay {
    const records_filter *filter;
    render_format fmt;
    FILE *out;
    uint64_t printed;
    /* --msg */
    bool found_submit;
    uint64_t submit_seq, submit_time;
    char sender[KETEN_NAME_MAX + 1], category[KETEN_LABEL_MAX + 1], purpose[KETEN_LABEL_MAX + 1];
    int kind;
    uint32_t rule;
    size_t n_fates;
    fate fates[KETEN_MAX_RECIPIENTS];
    uint64_t rejected;
} replay;

static fate *fate_of(replay *r, const char *id)
{
    for (size_t i = 0; i < r->n_fates; i++) {
        if (strcmp(r->fates[i].id, id) == 0) {
            return &r->fates[i];
        }
    }
    if (r->n_fates == KETEN_MAX_RECIPIENTS || strlen(id) > KETEN_NAME_MAX) {
        return NULL;
    }
    fate *f = &r->fates[r->n_fates++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", id);
    f->delivered_seq = f->receipted_seq = f->refused_seq = f->expired_seq = UINT64_MAX;
    return f;
}

static void track(replay *r, const Keten__AuditRecord *rec)
{
    fate *f = NULL;
    switch (rec->event) {
    case KETEN__EVENT__EVENT_SUBMITTED:
        if (r->found_submit) {
            return;
        }
        r->found_submit = true;
        r->submit_seq = rec->seq;
        r->submit_time = rec->time;
        snprintf(r->sender, sizeof r->sender, "%s", rec->sender);
        snprintf(r->category, sizeof r->category, "%s", rec->category);
        snprintf(r->purpose, sizeof r->purpose, "%s", rec->purpose);
        r->kind = (int)rec->kind;
        r->rule = rec->rule;
        for (size_t i = 0; i < rec->n_recipients; i++) {
            (void)fate_of(r, rec->recipients[i]);
        }
        return;
    case KETEN__EVENT__EVENT_DELIVERED:
        if ((f = fate_of(r, rec->node)) != NULL && f->delivered_seq == UINT64_MAX) {
            f->delivered_seq = rec->seq;
            f->delivered_at = rec->time;
        }
        return;
    case KETEN__EVENT__EVENT_RECEIPTED:
        if ((f = fate_of(r, rec->node)) != NULL && f->receipted_seq == UINT64_MAX
            && f->refused_seq == UINT64_MAX) {
            f->receipted_seq = rec->seq;
            f->receipted_at = rec->time;
            f->has_received = sigcheck_receipt_stored_at(rec, &f->received_at);
        }
        return;
    case KETEN__EVENT__EVENT_REFUSED_BY_RECIPIENT:
        if ((f = fate_of(r, rec->node)) != NULL && f->receipted_seq == UINT64_MAX
            && f->refused_seq == UINT64_MAX) {
            f->refused_seq = rec->seq;
            f->refused_at = rec->time;
            f->reason = (int)rec->reason;
            f->has_received = sigcheck_receipt_stored_at(rec, &f->received_at);
        }
        return;
    case KETEN__EVENT__EVENT_EXPIRED:
        for (size_t i = 0; i < rec->n_recipients; i++) {
            if ((f = fate_of(r, rec->recipients[i])) != NULL && f->expired_seq == UINT64_MAX) {
                f->expired_seq = rec->seq;
                f->expired_at = rec->time;
            }
        }
        return;
    case KETEN__EVENT__EVENT_REJECTED:
        r->rejected++;
        return;
    default:
        return;
    }
}

typedef struct scan {
    replay *r;
    records_index *idx;
} scan;

static keten_err scan_visit(
    void *ctx, const Keten__AuditRecord *rec, const records_msg *m, const uint8_t *leaf, size_t len)
{
    (void)leaf;
    (void)len;
    scan *s = ctx;
    replay *r = s->r;
    if (!records_filter_match(r->filter, s->idx, rec, m)) {
        return KETEN_OK;
    }
    render_record(r->out, r->fmt, s->idx, rec, m);
    r->printed++;
    if (r->filter->has_msg) {
        track(r, rec);
    }
    if (ferror(r->out)) {
        return keten_err_set(KETEN_ERR_IO, "writing the replay failed");
    }
    return KETEN_OK;
}

static void print_life(replay *r, const records_filter *f)
{
    char id[KETEN_MSG_ID_HEX_BYTES], t[32], t2[32];
    keten_hex(f->msg_id, KETEN_MSG_ID_BYTES, id);
    printf("\nLife of message %s\n", id);
    if (!r->found_submit) {
        printf("  never accepted: no submitted record (%" PRIu64 " rejected attempt(s))\n",
            r->rejected);
        return;
    }
    keten_time_iso(r->submit_time, t, sizeof t);
    printf("  %s ", records_kind_name(r->kind));
    render_plain(stdout, r->category);
    printf(" for purpose ");
    render_plain(stdout, r->purpose);
    printf(", allowed by policy rule %" PRIu32 "\n", r->rule);
    printf("  submitted  %s by ", t);
    render_plain(stdout, r->sender);
    printf(" (record %" PRIu64 ", signed by the sender)\n", r->submit_seq);
    if (r->rejected > 0) {
        printf("  rejected   %" PRIu64 " later attempt(s) with the same msg_id\n", r->rejected);
    }
    for (size_t i = 0; i < r->n_fates; i++) {
        const fate *x = &r->fates[i];
        printf("  to ");
        render_plain(stdout, x->id);
        printf(":\n");
        if (x->delivered_seq != UINT64_MAX) {
            keten_time_iso(x->delivered_at, t, sizeof t);
            printf("    delivered  %s (record %" PRIu64 ", the broker's claim)\n", t,
                x->delivered_seq);
        }
        snprintf(t2, sizeof t2, "an unknown time");
        if (x->has_received) {
            keten_time_iso(x->received_at, t2, sizeof t2);
        }
        if (x->receipted_seq != UINT64_MAX) {
            keten_time_iso(x->receipted_at, t, sizeof t);
            printf("    receipted  %s (record %" PRIu64
                   ", signed by the recipient in a receipt batch, which stored it "
                   "at %s by its own clock)\n",
                t, x->receipted_seq, t2);
        }
        if (x->refused_seq != UINT64_MAX) {
            keten_time_iso(x->refused_at, t, sizeof t);
            printf("    refused    %s (record %" PRIu64
                   ", signed by the recipient in a receipt batch, at %s by its own clock): "
                   "reason %s\n",
                t, x->refused_seq, t2, records_reason_name(x->reason));
        }
        if (x->expired_seq != UINT64_MAX) {
            keten_time_iso(x->expired_at, t, sizeof t);
            printf("    expired    %s (record %" PRIu64 ", the broker's claim): never receipted\n",
                t, x->expired_seq);
        }
        if (x->receipted_seq == UINT64_MAX && x->refused_seq == UINT64_MAX
            && x->expired_seq == UINT64_MAX) {
            printf("    pending    no receipt, refusal or expiry recorded yet\n");
        }
    }
}

int cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { "node", required_argument, NULL, 'n' },
        { "category", required_argument, NULL, 'c' },
        { "purpose", required_argument, NULL, 'p' },
        { "msg", required_argument, NULL, 'm' },
        { "format", required_argument, NULL, 'F' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL;
    records_filter f;
    memset(&f, 0, sizeof f);
    render_format fmt = RENDER_TEXT;
    int c, rc;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'f':
            if ((rc = cmd_parse_time(CMD, "--from", optarg, &f.from_ms)) != KETEN_EXIT_OK) {
                return rc;
            }
            f.has_from = true;
            break;
        case 't':
            if ((rc = cmd_parse_time(CMD, "--to", optarg, &f.to_ms)) != KETEN_EXIT_OK) {
                return rc;
            }
            f.has_to = true;
            break;
        case 'n':
            if (!keten_name_valid(optarg)) {
                return keten_cli_usage(
                    CMD, "--node '%s' is not a node id ([a-z0-9-]{1,32})", optarg);
            }
            f.node = optarg;
            break;
        case 'c':
            if (!keten_label_valid(optarg)) {
                return keten_cli_usage(CMD, "--category '%s' is not a valid category", optarg);
            }
            f.category = optarg;
            break;
        case 'p':
            if (!keten_label_valid(optarg)) {
                return keten_cli_usage(CMD, "--purpose '%s' is not a valid purpose", optarg);
            }
            f.purpose = optarg;
            break;
        case 'm':
            if (!cmd_parse_msg_id(optarg, f.msg_id)) {
                return keten_cli_usage(CMD, "--msg '%s' is not 32 hex characters", optarg);
            }
            f.has_msg = true;
            break;
        case 'F':
            if (render_parse_format(optarg, &fmt) != KETEN_OK) {
                return keten_cli_usage(CMD, "--format must be text, jsonl or csv");
            }
            break;
        case 'j':
            fmt = RENDER_JSONL;
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
    if (f.has_from && f.has_to && f.to_ms <= f.from_ms) {
        return keten_cli_usage(CMD, "--to must be after --from");
    }
    auditdb *a = NULL;
    if ((rc = cmd_open_db(CMD, db, &a)) != KETEN_EXIT_OK) {
        return rc;
    }
    records_index *idx = records_index_new();
    replay *r = calloc(1, sizeof *r);
    dirinfo *dirs = NULL;
    keten_err e = KETEN_OK;
    if (idx == NULL || r == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "replaying");
    } else if ((e = dirinfo_load(a, &dirs)) == KETEN_OK) {
        records_index_set_dirs(idx, dirs);
        r->filter = &f;
        r->fmt = fmt;
        r->out = stdout;
        render_header(stdout, fmt);
        scan s = { r, idx };
        e = records_scan(a, idx, scan_visit, &s);
        if (e == KETEN_OK && f.has_msg && r->printed == 0) {
            char id[KETEN_MSG_ID_HEX_BYTES];
            keten_hex(f.msg_id, KETEN_MSG_ID_BYTES, id);
            e = keten_err_set(KETEN_ERR_NOT_FOUND, "message %s has no record in this log", id);
        }
        if (e == KETEN_OK && f.has_msg && fmt == RENDER_TEXT) {
            print_life(r, &f);
        }
        if (e == KETEN_OK) {
            e = render_finish(stdout, "the replay");
        }
    }
    free(r);
    records_index_destroy(&idx);
    dirinfo_destroy(&dirs);
    auditdb_close(&a);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
