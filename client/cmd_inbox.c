/* keten-node inbox: list received messages not yet handled. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

static const char inbox_usage[]
    = "Usage: keten-node inbox --home DIR [--json] [--wait SECONDS] [--all]\n"
      "                        [--kind K] [--category C] [--since T]\n"
      "\n"
      "List the received messages the application has not handled yet (see\n"
      "keten-node ack), oldest first: a header row, one line per message (with --all,\n"
      "handled ones marked \"(handled)\"), then a summary line: N messages, M unhandled.\n"
      "With --json, one JSON object per line: msg_id, from, kind, received_at (ISO\n"
      "8601 UTC), in_reply_to (if any), signal, and reply_msg_id when this node\n"
      "replied to the query; no header and no summary.\n"
      "\n"
      "Options:\n"
      "  --home DIR        the node's home (its daemon must be running)\n"
      "  --json            JSON lines\n"
      "  --wait SECONDS    when there is nothing to list, wait up to SECONDS for a message\n"
      "  --all             also list handled messages\n"
      "  --kind K          only messages of kind K: signal, query, reply or feedback\n"
      "  --category C      only messages of category C (the signal's type)\n"
      "  --since T         only messages received at or after T (ISO 8601 UTC, e.g.\n"
      "                    2026-01-01T00:00:00Z, or ms since 1970)\n"
      "  --help            show this help\n";

static void print_header(void)
{
    printf("%-32s  %-24s  %-16s %-8s %s\n", "MSG_ID", "RECEIVED", "FROM", "KIND", "TYPE");
}

/* Is msg_id among the messages of list? */
static bool listed(const json_t *list, const char *msg_id)
{
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "msg_id"));
        if (id != NULL && msg_id != NULL && strcmp(id, msg_id) == 0) {
            return true;
        }
    }
    return false;
}

/* What to list: GET /v1/inbox's query. */
typedef struct inbox_filter {
    const char *kind, *category;
    bool has_since;
    uint64_t since;
} inbox_filter;

static int fetch(const char *home, bool all, const inbox_filter *f, uint64_t wait_s, json_t **reply)
{
    char query[KETEN_APICLIENT_QUERY_MAX] = "", num[24];
    keten_err e
        = keten_apiclient_query_add(query, sizeof query, "unhandled", all ? "false" : "true");
    if (e == KETEN_OK && f->kind != NULL) {
        e = keten_apiclient_query_add(query, sizeof query, "kind", f->kind);
    }
    if (e == KETEN_OK && f->category != NULL) {
        e = keten_apiclient_query_add(query, sizeof query, "category", f->category);
    }
    if (e == KETEN_OK && f->has_since) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)f->since);
        e = keten_apiclient_query_add(query, sizeof query, "since", num);
    }
    if (e == KETEN_OK && wait_s > 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)(wait_s * 1000));
        e = keten_apiclient_query_add(query, sizeof query, "wait", num);
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    return keten_apiclient_list_get(
        home, "/v1/inbox", query, (int)(wait_s * 1000) + KETEN_APICLIENT_TIMEOUT_MS, reply);
}

/* Prints one message, "(handled)" when the unhandled list `open` (NULL:
 * none asked for) lacks it; true if it is unhandled. */
static bool print_text(const json_t *m, void *open)
{
    bool handled = open != NULL
        && !listed(
            json_object_get(open, "messages"), json_string_value(json_object_get(m, "msg_id")));
    const json_t *sig = json_object_get(m, "signal");
    const char *irt = json_string_value(json_object_get(m, "in_reply_to"));
    printf("%-32s  %-24s  %-16s %-8s %s%s%s%s\n", json_string_value(json_object_get(m, "msg_id")),
        json_string_value(json_object_get(m, "received_at")),
        json_string_value(json_object_get(m, "from")),
        json_string_value(json_object_get(m, "kind")),
        json_string_value(json_object_get(sig, "type")) != NULL
            ? json_string_value(json_object_get(sig, "type"))
            : "?",
        irt != NULL ? "  in reply to " : "", irt != NULL ? irt : "", handled ? "  (handled)" : "");
    return !handled;
}

int cmd_inbox(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "wait", required_argument, NULL, 'w' },
        { "all", no_argument, NULL, 'a' },
        { "kind", required_argument, NULL, 'k' },
        { "category", required_argument, NULL, 'c' },
        { "since", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL;
    bool as_json = false, all = false;
    uint64_t wait_s = 0;
    inbox_filter filter = { 0 };
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'w':
            if (!keten_cli_parse_uint(optarg, 0, 86400, &wait_s)) {
                return keten_cli_usage("inbox", "--wait must be 0 to 86400 seconds");
            }
            break;
        case 'a':
            all = true;
            break;
        case 'k':
            if (strcmp(optarg, "signal") != 0 && strcmp(optarg, "query") != 0
                && strcmp(optarg, "reply") != 0 && strcmp(optarg, "feedback") != 0) {
                return keten_cli_usage(
                    "inbox", "--kind must be signal, query, reply or feedback, not '%s'", optarg);
            }
            filter.kind = optarg;
            break;
        case 'c':
            if (!keten_label_valid(optarg)) {
                return keten_cli_usage("inbox",
                    "--category '%s' is not a category: [a-z0-9][a-z0-9./-], at most %d "
                    "characters, as the directory registers them",
                    optarg, KETEN_LABEL_MAX);
            }
            filter.category = optarg;
            break;
        case 's':
            if (keten_time_parse(optarg, &filter.since) != KETEN_OK) {
                return keten_cli_usage("inbox",
                    "--since '%s' is not ISO 8601 UTC (2026-01-01T00:00:00Z) or ms", optarg);
            }
            filter.has_since = true;
            break;
        case 'h':
            fputs(inbox_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("inbox", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("inbox", "unexpected argument '%s'", argv[optind]);
    }
    if (home == NULL) {
        return keten_cli_usage("inbox", "--home DIR is required");
    }
    json_t *reply = NULL, *open = NULL;
    int rc = fetch(home, all, &filter, wait_s, &reply);
    /* With --all, the text marks the handled ones: those the unhandled list lacks. */
    if (rc == KETEN_EXIT_OK && all && !as_json) {
        rc = fetch(home, false, &filter, 0, &open);
    }
    size_t unhandled = 0;
    if (rc == KETEN_EXIT_OK) {
        rc = keten_apiclient_list_print(reply, as_json, print_header, print_text, open, &unhandled);
    }
    if (rc == KETEN_EXIT_OK && !as_json) {
        size_t n = json_array_size(json_object_get(reply, "messages"));
        printf("%zu message%s, %zu unhandled\n", n, n == 1 ? "" : "s", unhandled);
    }
    keten_apiclient_wipe_json(open);
    json_decref(open);
    keten_apiclient_wipe_json(reply); /* the signals */
    json_decref(reply);
    return rc;
}
