/* keten-node send: seal a signal for partners and hand it to the daemon. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char send_usage[]
    = "Usage: keten-node send --home DIR --to PARTIES [--kind K] (--json FILE|-) [--wait]\n"
      "                       [--timeout SECONDS]\n"
      "\n"
      "Send a signal (JSON, see keten(7)) to the partners named by PARTIES:\n"
      "node ids, role:NAME or *, comma-separated (e.g. role:police,role:tax). The\n"
      "signal's type and purpose are its category and purpose, visible to the broker,\n"
      "which enforces the sharing policy on them; the node checks the policy first and\n"
      "refuses early, naming the rule. The message is stored in the node's outbox\n"
      "before it is sent and resent until the broker acknowledges it.\n"
      "Prints the msg_id (32 hex characters). While the broker refuses this node it\n"
      "fails at once, saying why and what to do (\"keys replaced in version N: start\n"
      "with the new keys\", exit 1; \"revoked in version N: ask your administrator\",\n"
      "exit 3).\n"
      "\n"
      "Options:\n"
      "  --home DIR         the node's home (its daemon must be running)\n"
      "  --to PARTIES       recipients\n"
      "  --kind K           signal (default), query or feedback\n"
      "  --json FILE|-      the signal, from FILE or standard input\n"
      "  --wait             wait for the broker's acknowledgement (or refusal)\n"
      "  --timeout SECONDS  how long --wait waits (default 30)\n"
      "  --help             show this help\n";

int cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "to", required_argument, NULL, 't' },
        { "kind", required_argument, NULL, 'k' },
        { "json", required_argument, NULL, 'j' },
        { "wait", no_argument, NULL, 'w' },
        { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *to = NULL, *kind = "signal", *json = NULL;
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
        case 't':
            to = optarg;
            break;
        case 'k':
            kind = optarg;
            break;
        case 'j':
            json = optarg;
            break;
        case 'w':
            wait = true;
            break;
        case 'T':
            if (!keten_cli_parse_uint(optarg, 1, 86400, &timeout_s)) {
                return keten_cli_usage("send", "--timeout must be 1 to 86400 seconds");
            }
            break;
        case 'h':
            fputs(send_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("send", c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage("send", "unexpected argument '%s'", argv[optind]);
    }
    if (home == NULL || to == NULL || json == NULL) {
        return keten_cli_usage("send", "--home, --to and --json are required");
    }
    if (strcmp(kind, "signal") != 0 && strcmp(kind, "query") != 0
        && strcmp(kind, "feedback") != 0) {
        return keten_cli_usage("send",
            "--kind must be signal, query or feedback (answer a "
            "query with keten-node reply)");
    }
    char *text = NULL;
    size_t len = 0;
    keten_err e = keten_apiclient_read_signal(json, &text, &len);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    json_t *req = json_pack("{s:s, s:s, s:s, s:s%, s:b, s:I}", "cmd", "send", "to", to, "kind",
        kind, "signal", text, len, "wait", wait, "timeout_ms", (json_int_t)(timeout_s * 1000));
    sodium_memzero(text, len);
    free(text);
    if (req == NULL) {
        return keten_cli_usage("send", "the signal is not valid UTF-8 text");
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
