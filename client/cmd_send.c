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
    = "Usage: keten-node send --home DIR --to PARTIES [--kind K] --signal FILE|- [--wait]\n"
      "                       [--timeout SECONDS] [--idempotency-key KEY] [--dry-run] [--json]\n"
      "\n"
      "Send a signal to the partners named by PARTIES: node ids, role:NAME or *,\n"
      "comma-separated (e.g. role:police,role:tax). The signal is a JSON object,\n"
      "described field by field, with an example of each kind, in keten-node(8)\n"
      "(SIGNAL FORMAT). Its type and purpose are the message's category and purpose,\n"
      "visible to the broker, which enforces the sharing policy on them; the node\n"
      "checks the policy first and refuses early, naming the rule. The message is\n"
      "stored in the node's outbox before it is sent and resent until the broker\n"
      "acknowledges it. Prints the msg_id (32 hex characters). While the broker\n"
      "refuses this node it fails at once, saying why and what to do (\"keys replaced\n"
      "in version N: start with the new keys\", exit 1; \"revoked in version N: ask\n"
      "your administrator\", exit 3).\n"
      "\n"
      "Options:\n"
      "  --home DIR         the node's home (its daemon must be running)\n"
      "  --to PARTIES       recipients\n"
      "  --kind K           signal (default) or query (feedback and replies answer a\n"
      "                     received message: see keten-node reply)\n"
      "  --signal FILE|-    the signal JSON, from FILE or standard input\n"
      "  --wait             wait for the broker's acknowledgement (or refusal)\n"
      "  --timeout SECONDS  how long --wait waits (default 30)\n"
      "  --idempotency-key KEY\n"
      "                     send once however often this command is repeated: KEY is\n"
      "                     1 to 64 characters [A-Za-z0-9._:-], one per message you\n"
      "                     mean to send (a case number and a counter). The same KEY\n"
      "                     with the same signal file and options within 7 days sends\n"
      "                     nothing new and prints the first message's msg_id; with\n"
      "                     another signal it is refused (exit 2)\n"
      "  --dry-run          send nothing: check the signal, the recipients and the\n"
      "                     policy as a send would, and list every problem (with the\n"
      "                     allowed values); prints \"valid\" and exits 0 when there is\n"
      "                     none, else exits 1. Without a running node, the signal's\n"
      "                     fields alone are checked\n"
      "  --json             print the result as JSON ({\"msg_id\", \"state\"}; with\n"
      "                     --dry-run {\"valid\", \"checked\", \"problems\", \"more\"})\n"
      "  --help             show this help\n";

int cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "to", required_argument, NULL, 't' },
        { "kind", required_argument, NULL, 'k' },
        { "signal", required_argument, NULL, 's' },
        { "wait", no_argument, NULL, 'w' },
        { "timeout", required_argument, NULL, 'T' },
        { "idempotency-key", required_argument, NULL, 'i' },
        { "dry-run", no_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *to = NULL, *kind = "signal", *signal = NULL, *idem_key = NULL;
    bool wait = false, dry_run = false, as_json = false;
    uint64_t timeout_s = 30;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
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
        case 's':
            signal = optarg;
            break;
        case 'w':
            wait = true;
            break;
        case 'T':
            if (!keten_cli_parse_uint(optarg, 1, 86400, &timeout_s)) {
                return keten_cli_usage("send", "--timeout must be 1 to 86400 seconds");
            }
            break;
        case 'i':
            idem_key = optarg;
            break;
        case 'n':
            dry_run = true;
            break;
        case 'j':
            as_json = true;
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
    if (home == NULL || to == NULL || signal == NULL) {
        return keten_cli_usage("send", "--home, --to and --signal FILE|- are required");
    }
    if (strcmp(kind, "feedback") == 0) {
        return keten_cli_usage(
            "send", "feedback answers a received signal: keten-node reply --kind feedback MSG_ID");
    }
    if (strcmp(kind, "signal") != 0 && strcmp(kind, "query") != 0) {
        return keten_cli_usage(
            "send", "--kind must be signal or query (answer a query with keten-node reply)");
    }
    if (dry_run && wait) {
        return keten_cli_usage("send", "--dry-run sends nothing: there is nothing to --wait for");
    }
    int bad_key = keten_apiclient_idem_option("send", idem_key, dry_run);
    if (bad_key != 0) {
        return bad_key;
    }
    char *text = NULL;
    size_t len = 0;
    keten_err e = keten_apiclient_read_signal(signal, &text, &len);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    json_t *utf8 = json_stringn(text, len); /* NULL: not UTF-8, which JSON cannot be */
    const bool is_utf8 = utf8 != NULL;
    if (!is_utf8 && !dry_run) {
        sodium_memzero(text, len);
        free(text);
        return keten_cli_usage("send", "the signal is not valid UTF-8 text");
    }
    keten_apiclient_wipe_json(utf8);
    json_decref(utf8);
    /* The parties as given, comma by comma (an empty one is refused below). */
    json_t *req = NULL, *parties = json_array();
    for (const char *p = to; parties != NULL;) {
        size_t n = strcspn(p, ",");
        if (json_array_append_new(parties, json_stringn(p, n)) != 0) {
            json_decref(parties);
            parties = NULL;
            break;
        }
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    if (parties != NULL) {
        req = dry_run ? json_pack("{s:s, s:s, s:o}", "for", "send", "kind", kind, "to", parties)
                      : json_pack("{s:s, s:o}", "kind", kind, "to", parties);
    }
    /* An empty party cannot be an item of the request's "to": refused here
     * in the words of the node's directory (keten_directory_resolve). */
    bool empty_party
        = to[0] == '\0' || to[0] == ',' || strstr(to, ",,") != NULL || to[strlen(to) - 1] == ',';
    int rc;
    if (req == NULL) {
        rc = keten_cli_usage("send", "--to '%s' is not valid UTF-8 text", to);
    } else if (empty_party && !dry_run) {
        rc = keten_apiclient_refuse(home,
            to[0] == '\0'
                ? keten_err_set(
                    KETEN_ERR_BAD_NAME, "no parties given; name node ids, role:NAME or *")
                : keten_err_set(KETEN_ERR_BAD_NAME, "party '' is not a node id, role:NAME or '*'"));
    } else if (dry_run) {
        rc = keten_apiclient_dry_run(home, is_utf8 ? req : NULL, text, len, as_json);
    } else {
        /* A dry run goes to its own route (/v1/messages/validate): a daemon
         * that does not know it refuses it instead of sending. */
        rc = keten_apiclient_post_signal(
            home, "/v1/messages", req, text, len, idem_key, wait, timeout_s, as_json);
    }
    sodium_memzero(text, len);
    free(text);
    json_decref(req);
    return rc;
}
