/*
 * keten-audit stats --db ... [--by pair,category,month,purpose,rule]: counts of
 * exchanges per group (stats.h), as a table or JSON.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "records.h"
#include "render.h"
#include "stats.h"
#include "util.h"

#define CMD "stats"
#define DEFAULT_BY "pair,category,month"
#define RULE_TEXT_MAX 11 /* "4294967295" */
#define MAX_COLUMNS 6 /* every key once; pair gives two */
#define COL_RULE 5 /* the rule column (col_titles) */

static const char usage_text[]
    = "Usage: keten-audit stats --db BROKER_HOME|AUDIT_DIR [--by KEYS] [--from T] [--to T]\n"
      "                         [--json]\n"
      "\n"
      "Count exchanges: the table a RIEC needs for its annual accountability report.\n"
      "An exchange is one message to one recipient (a query to three partners is three\n"
      "exchanges). Per group: messages, exchanges, receipted (the recipient signed a\n"
      "receipt: stored), refused (the recipient signed a refusal; the totals count\n"
      "them per reason) and expired (never answered). Receipts, refusals and expiries\n"
      "count in the month the message was submitted. Rejected attempts and\n"
      "authentication failures are counted in the totals (they name no recipient or\n"
      "category).\n"
      "\n"
      "Options:\n"
      "  --db DIR      a broker home or an export\n"
      "  --by KEYS     comma-separated, in the order wanted: pair (sender -> recipient),\n"
      "                category, month (UTC, YYYY-MM), purpose, rule (the number of\n"
      "                the sharing policy's rule that allowed the message, as the log\n"
      "                records it); default " DEFAULT_BY "\n"
      "  --from T      count messages submitted at or after T (ISO 8601 UTC or ms)\n"
      "  --to T        and before T\n"
      "  --json        print as JSON\n"
      "  --help        show this help\n"
      "\n"
      "Exit codes: 0 printed, 1 failure, 2 usage error, 3 the log is damaged (run verify).\n";

typedef struct column {
    const char *title;
    size_t width;
} column;

/* The text of column col of r; a rule is written into buf. */
static const char *field(const stats_row *r, int col, char buf[static RULE_TEXT_MAX])
{
    switch (col) {
    case 0:
        return r->sender;
    case 1:
        return r->recipient;
    case 2:
        return r->category;
    case 3:
        return r->month;
    case COL_RULE:
        snprintf(buf, RULE_TEXT_MAX, "%" PRIu32, r->rule);
        return buf;
    default:
        return r->purpose;
    }
}

/* Columns of the keys in order: pair gives two (sender, recipient). */
static size_t key_columns(const stats_keys *k, int cols[static MAX_COLUMNS])
{
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++) {
        switch (k->key[i]) {
        case STATS_PAIR:
            cols[n++] = 0;
            cols[n++] = 1;
            break;
        case STATS_CATEGORY:
            cols[n++] = 2;
            break;
        case STATS_MONTH:
            cols[n++] = 3;
            break;
        case STATS_RULE:
            cols[n++] = COL_RULE;
            break;
        default:
            cols[n++] = 4;
            break;
        }
    }
    return n;
}

static const char *const col_titles[]
    = { "sender", "recipient", "category", "month", "purpose", "rule" };

static void print_reasons(const stats_totals *t)
{
    printf("rejected attempts  %" PRIu64, t->rejected);
    bool first = true;
    for (int i = 1; i < STATS_REASONS; i++) {
        if (t->rejected_by_reason[i] > 0) {
            printf("%s%s %" PRIu64, first ? " (" : ", ", records_reason_name(i),
                t->rejected_by_reason[i]);
            first = false;
        }
    }
    printf("%s\nrefused by recipients  %" PRIu64, first ? "" : ")", t->refused);
    first = true;
    for (int i = 1; i < STATS_REASONS; i++) {
        if (t->refused_by_reason[i] > 0) {
            printf("%s%s %" PRIu64, first ? " (" : ", ", records_reason_name(i),
                t->refused_by_reason[i]);
            first = false;
        }
    }
    printf("%s\nauthentication failures  %" PRIu64 "\n", first ? "" : ")", t->auth_failed);
}

static void print_table(const stats_table *t)
{
    int cols[MAX_COLUMNS];
    char buf[RULE_TEXT_MAX];
    size_t nc = key_columns(&t->keys, cols);
    size_t w[MAX_COLUMNS] = { 0 };
    for (size_t i = 0; i < nc; i++) {
        w[i] = strlen(col_titles[cols[i]]);
        for (size_t r = 0; r < t->n_rows; r++) {
            size_t l = strlen(field(&t->rows[r], cols[i], buf));
            w[i] = l > w[i] ? l : w[i];
        }
    }
    if (nc > 0 && w[0] < strlen("total")) {
        w[0] = strlen("total");
    }
    for (size_t i = 0; i < nc; i++) {
        printf("%-*s  ", (int)w[i], col_titles[cols[i]]);
    }
    printf("%9s %9s %9s %9s %9s\n", "messages", "exchanges", "receipted", "refused", "expired");
    for (size_t r = 0; r < t->n_rows; r++) {
        const stats_row *row = &t->rows[r];
        for (size_t i = 0; i < nc; i++) {
            const char *s = field(row, cols[i], buf);
            render_plain(stdout, s);
            printf("%*s  ", (int)(w[i] - strlen(s)), "");
        }
        printf("%9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 "\n",
            row->messages, row->exchanges, row->receipted, row->refused, row->expired);
    }
    size_t pad = 0;
    for (size_t i = 0; i < nc; i++) {
        pad += w[i] + 2;
    }
    printf("%-*s%9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64 "\n", (int)pad,
        "total", t->totals.messages, t->totals.exchanges, t->totals.receipted, t->totals.refused,
        t->totals.expired);
    print_reasons(&t->totals);
}

static json_t *table_json(const stats_table *t)
{
    json_t *by = json_array();
    json_t *rows = json_array();
    json_t *reasons = json_object();
    json_t *refusals = json_object();
    for (size_t i = 0; i < t->keys.n && by != NULL; i++) {
        json_array_append_new(by, json_string(stats_key_name(t->keys.key[i])));
    }
    int cols[MAX_COLUMNS];
    char buf[RULE_TEXT_MAX];
    size_t nc = key_columns(&t->keys, cols);
    for (size_t r = 0; r < t->n_rows && rows != NULL; r++) {
        const stats_row *row = &t->rows[r];
        json_t *o = json_object();
        for (size_t i = 0; i < nc && o != NULL; i++) {
            json_object_set_new(o, col_titles[cols[i]],
                cols[i] == COL_RULE ? json_integer((json_int_t)row->rule)
                                    : json_string(field(row, cols[i], buf)));
        }
        if (o != NULL) {
            json_object_set_new(o, "messages", json_integer((json_int_t)row->messages));
            json_object_set_new(o, "exchanges", json_integer((json_int_t)row->exchanges));
            json_object_set_new(o, "receipted", json_integer((json_int_t)row->receipted));
            json_object_set_new(o, "refused", json_integer((json_int_t)row->refused));
            json_object_set_new(o, "expired", json_integer((json_int_t)row->expired));
        }
        json_array_append_new(rows, o);
    }
    for (int i = 1; i < STATS_REASONS && reasons != NULL; i++) {
        if (t->totals.rejected_by_reason[i] > 0) {
            json_object_set_new(reasons, records_reason_name(i),
                json_integer((json_int_t)t->totals.rejected_by_reason[i]));
        }
    }
    for (int i = 1; i < STATS_REASONS && refusals != NULL; i++) {
        if (t->totals.refused_by_reason[i] > 0) {
            json_object_set_new(refusals, records_reason_name(i),
                json_integer((json_int_t)t->totals.refused_by_reason[i]));
        }
    }
    char t1[32] = "", t2[32] = "";
    if (t->totals.messages > 0) {
        keten_time_iso(t->totals.first_time, t1, sizeof t1);
        keten_time_iso(t->totals.last_time, t2, sizeof t2);
    }
    return json_pack("{s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:o, s:s, s:s}}",
        "by", by, "rows", rows, "totals", "records", (json_int_t)t->totals.records, "messages",
        (json_int_t)t->totals.messages, "exchanges", (json_int_t)t->totals.exchanges, "receipted",
        (json_int_t)t->totals.receipted, "refused", (json_int_t)t->totals.refused,
        "refused_by_reason", refusals, "expired", (json_int_t)t->totals.expired, "rejected",
        (json_int_t)t->totals.rejected, "auth_failed", (json_int_t)t->totals.auth_failed,
        "rejected_by_reason", reasons, "first_submit", t1, "last_submit", t2);
}

int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "by", required_argument, NULL, 'b' },
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *db = NULL, *by = DEFAULT_BY;
    records_filter f;
    memset(&f, 0, sizeof f);
    bool json = false;
    int c, rc;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'b':
            by = optarg;
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
    stats_keys keys;
    if (stats_parse_by(by, &keys) != KETEN_OK) {
        return keten_cli_usage(CMD, "%s", keten_err_detail());
    }
    auditdb *a = NULL;
    if ((rc = cmd_open_db(CMD, db, &a)) != KETEN_EXIT_OK) {
        return rc;
    }
    records_index *idx = records_index_new();
    stats_table t;
    memset(&t, 0, sizeof t);
    keten_err e = idx == NULL ? keten_err_set(KETEN_ERR_NOMEM, "counting")
                              : stats_collect(a, idx, &f, &keys, &t, 1);
    if (e == KETEN_OK) {
        if (json) {
            e = keten_cli_json_print(table_json(&t));
        } else {
            print_table(&t);
            e = render_finish(stdout, "the table");
        }
    }
    stats_table_free(&t);
    records_index_destroy(&idx);
    auditdb_close(&a);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
