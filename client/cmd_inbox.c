/* keten-node inbox: list received messages not yet handled. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char inbox_usage[]
    = "Usage: keten-node inbox --home DIR [--json] [--wait SECONDS] [--all]\n"
      "\n"
      "List the received messages the application has not handled yet (see\n"
      "keten-node ack), oldest first. With --json, one JSON object per line: msg_id,\n"
      "from, kind, received_at (ISO 8601 UTC), in_reply_to (if any) and signal.\n"
      "\n"
      "Options:\n"
      "  --home DIR        the node's home (its daemon must be running)\n"
      "  --json            JSON lines\n"
      "  --wait SECONDS    when there is nothing to list, wait up to SECONDS for a message\n"
      "  --all             also list handled messages\n"
      "  --help            show this help\n";

static void print_text(const json_t *m)
{
    const json_t *sig = json_object_get(m, "signal");
    const char *irt = json_string_value(json_object_get(m, "in_reply_to"));
    printf("%s  %s  %-16s %-8s %s%s%s\n", json_string_value(json_object_get(m, "msg_id")),
        json_string_value(json_object_get(m, "received_at")),
        json_string_value(json_object_get(m, "from")),
        json_string_value(json_object_get(m, "kind")),
        json_string_value(json_object_get(sig, "type")) != NULL
            ? json_string_value(json_object_get(sig, "type"))
            : "?",
        irt != NULL ? "  in reply to " : "", irt != NULL ? irt : "");
}

int cmd_inbox(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "wait", required_argument, NULL, 'w' },
        { "all", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL;
    bool as_json = false, all = false;
    uint64_t wait_s = 0;
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
    json_t *req = json_pack(
        "{s:s, s:b, s:I}", "cmd", "inbox", "all", all, "wait_ms", (json_int_t)(wait_s * 1000));
    json_t *reply = NULL;
    keten_err e = req == NULL ? KETEN_ERR_NOMEM
                              : keten_apiclient_call(home, req,
                                  (int)(wait_s * 1000) + KETEN_APICLIENT_TIMEOUT_MS, &reply);
    json_decref(req);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(reply);
    if (rc == KETEN_EXIT_OK) {
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(reply, "messages"), i, m)
        {
            if (as_json) {
                char *line = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (line == NULL) {
                    rc = keten_cli_error(KETEN_ERR_NOMEM);
                    break;
                }
                printf("%s\n", line);
                free(line);
            } else {
                print_text(m);
            }
        }
    }
    json_decref(reply);
    return rc;
}
