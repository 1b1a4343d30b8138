/* keten-node reply: answer a received query (kind reply, in_reply_to set). */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char reply_usage[]
    = "Usage: keten-node reply --home DIR MSG_ID (--json FILE|-) [--wait] [--timeout SECONDS]\n"
      "\n"
      "Answer the received message MSG_ID (usually a query) with a signal: it goes to\n"
      "the query's sender only, as kind reply with in_reply_to = MSG_ID. Prints the\n"
      "reply's msg_id.\n"
      "\n"
      "Options:\n"
      "  --home DIR         the node's home (its daemon must be running)\n"
      "  --json FILE|-      the answer, from FILE or standard input\n"
      "  --wait             wait for the broker's acknowledgement (or refusal)\n"
      "  --timeout SECONDS  how long --wait waits (default 30)\n"
      "  --help             show this help\n";

int cmd_reply(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "json", required_argument, NULL, 'j' },
        { "wait", no_argument, NULL, 'w' },
        { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *json = NULL;
    bool wait = false;
    uint64_t timeout_s = 30;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'j':
            json = optarg;
            break;
        case 'w':
            wait = true;
            break;
        case 'T':
            if (!keten_cli_parse_uint(optarg, 1, 86400, &timeout_s)) {
                return keten_cli_usage("reply", "--timeout must be 1 to 86400 seconds");
            }
            break;
        case 'h':
            fputs(reply_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("reply", c, argc, argv);
        }
    }
    if (home == NULL || json == NULL) {
        return keten_cli_usage("reply", "--home and --json are required");
    }
    if (argc - optind != 1) {
        return keten_cli_usage("reply", "give exactly one MSG_ID (the query to answer)");
    }
    const char *msg_id = argv[optind];
    if (strlen(msg_id) != 32 || strspn(msg_id, "0123456789abcdef") != 32) {
        return keten_cli_usage("reply", "MSG_ID must be 32 lowercase hex characters");
    }
    char *text = NULL;
    size_t len = 0;
    keten_err e = keten_apiclient_read_signal(json, &text, &len);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    json_t *req = json_pack("{s:s, s:s, s:s%, s:b, s:I}", "cmd", "reply", "msg_id", msg_id,
        "signal", text, len, "wait", wait, "timeout_ms", (json_int_t)(timeout_s * 1000));
    sodium_memzero(text, len);
    free(text);
    if (req == NULL) {
        return keten_cli_usage("reply", "the signal is not valid UTF-8 text");
    }
    json_t *reply = NULL;
    e = keten_apiclient_call(
        home, req, (int)(timeout_s * 1000) + KETEN_APICLIENT_TIMEOUT_MS, &reply);
    json_decref(req);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(reply);
    if (rc == KETEN_EXIT_OK) {
        printf("%s\n", json_string_value(json_object_get(reply, "msg_id")));
    }
    json_decref(reply);
    return rc;
}
