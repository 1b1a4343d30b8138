/* keten-node sent: list the messages this node sent, with each recipient's state. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

static const char sent_usage[]
    = "Usage: keten-node sent --home DIR [--json] [--since T]\n"
      "\n"
      "List the messages this node sent, oldest first, with their state (pending,\n"
      "accepted by the broker, rejected, expired) and each recipient's (pending,\n"
      "accepted, receipted, refused with the recipient's reason, expired), then a\n"
      "summary line. At most the newest 1000 are listed (a line says how many more\n"
      "there are; use --since). With --json, one JSON object per line, as 'status\n"
      "MSG_ID --json' shows a sent message, and no summary.\n"
      "\n"
      "Options:\n"
      "  --home DIR   the node's home (its daemon must be running)\n"
      "  --json       JSON lines\n"
      "  --since T    only messages made at or after T (ISO 8601 UTC, e.g.\n"
      "               2026-01-01T00:00:00Z, or ms since 1970)\n"
      "  --help       show this help\n";

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "-";
}

/* A recipient's state is final once receipted, refused, expired or rejected. */
static bool open_state(const char *state)
{
    return strcmp(state, "pending") == 0 || strcmp(state, "accepted") == 0;
}

static void print_header(void)
{
    printf("%-32s  %-24s  %-8s  %-20s  %-9s  %s\n", "MSG_ID", "CREATED", "KIND", "CATEGORY",
        "STATE", "RECIPIENTS");
}

/* Prints one message; true if a recipient has not answered yet. */
static bool print_text(const json_t *m, void *arg)
{
    (void)arg;
    bool open = false;
    printf("%-32s  %-24s  %-8s  %-20s  %-9s ", str(m, "msg_id"), str(m, "created_at"),
        str(m, "kind"), str(m, "category"), str(m, "state"));
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(m, "recipients"), i, r)
    {
        const char *st = str(r, "state");
        open = open || open_state(st);
        printf("%s %s:%s", i > 0 ? "," : "", str(r, "id"), st);
        if (json_object_get(r, "reason") != NULL) {
            printf(" (%s)", str(r, "reason"));
        }
    }
    printf("\n");
    return open;
}

int cmd_sent(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "since", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL;
    bool as_json = false, has_since = false;
    uint64_t since = 0;
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
        case 's':
            if (keten_time_parse(optarg, &since) != KETEN_OK) {
                return keten_cli_usage("sent",
                    "--since '%s' is not ISO 8601 UTC (2026-01-01T00:00:00Z) or ms", optarg);
            }
            has_since = true;
            break;
        case 'h':
            fputs(sent_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("sent", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("sent", "unexpected argument '%s'", argv[optind]);
    }
    if (home == NULL) {
        return keten_cli_usage("sent", "--home DIR is required");
    }
    char query[KETEN_APICLIENT_QUERY_MAX] = "";
    keten_err e = KETEN_OK;
    if (has_since) {
        char ms[24];
        snprintf(ms, sizeof ms, "%llu", (unsigned long long)since);
        e = keten_apiclient_query_add(query, sizeof query, "since", ms);
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    json_t *reply = NULL;
    int rc = keten_apiclient_list_get(home, "/v1/sent", query, KETEN_APICLIENT_TIMEOUT_MS, &reply);
    size_t open = 0;
    if (rc == KETEN_EXIT_OK) {
        rc = keten_apiclient_list_print(reply, as_json, print_header, print_text, NULL, &open);
    }
    if (rc == KETEN_EXIT_OK && !as_json) {
        size_t n = json_array_size(json_object_get(reply, "messages"));
        json_int_t more = json_integer_value(json_object_get(reply, "more"));
        printf(
            "%zu message%s sent, %zu awaiting a recipient's answer\n", n, n == 1 ? "" : "s", open);
        if (more > 0) {
            printf("%lld older message%s not listed (use --since)\n", (long long)more,
                more == 1 ? "" : "s");
        }
    }
    json_decref(reply);
    return rc;
}
