/* keten-node reply: answer a received query (kind reply) or signal (kind
 * feedback); in_reply_to is the message answered. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char reply_usage[]
    = "Usage: keten-node reply --home DIR MSG_ID [--kind reply|feedback] --signal FILE|-\n"
      "                        [--wait] [--timeout SECONDS] [--idempotency-key KEY]\n"
      "                        [--dry-run] [--json]\n"
      "\n"
      "Answer the received message MSG_ID. It goes to that message's sender only, with\n"
      "in_reply_to = MSG_ID:\n"
      "  reply     (default) answers a received query, once: a second reply to the\n"
      "            same query, or a reply to anything but a query, is refused;\n"
      "  feedback  tells the sender of a received signal what was done with it (as\n"
      "            often as there is news); only a signal gets feedback. To repeat a\n"
      "            feedback safely after an error, give it --idempotency-key.\n"
      "The answer is a signal JSON (see keten-node(8), SIGNAL FORMAT). Prints the\n"
      "answer's msg_id.\n"
      "\n"
      "Options:\n"
      "  --home DIR         the node's home (its daemon must be running)\n"
      "  --kind K           reply (default) or feedback\n"
      "  --signal FILE|-    the answer, from FILE or standard input\n"
      "  --wait             wait for the broker's acknowledgement (or refusal)\n"
      "  --timeout SECONDS  how long --wait waits (default 30)\n"
      "  --idempotency-key KEY\n"
      "                     answer once however often this command is repeated (as\n"
      "                     for send): the same KEY, MSG_ID, kind and signal within\n"
      "                     7 days sends nothing new and prints the first answer's\n"
      "                     msg_id (also for a reply, which is otherwise refused the\n"
      "                     second time); anything else with that KEY is refused\n"
      "                     (exit 2)\n"
      "  --dry-run          send nothing: check the answer as reply would (the message\n"
      "                     answered, the signal, the policy) and list every problem;\n"
      "                     prints \"valid\" and exits 0 when there is none, else 1\n"
      "  --json             print the result as JSON (as for send)\n"
      "  --help             show this help\n";

int cmd_reply(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
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
    const char *home = NULL, *signal = NULL, *kind = "reply", *idem_key = NULL;
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
                return keten_cli_usage("reply", "--timeout must be 1 to 86400 seconds");
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
            fputs(reply_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("reply", c, argc, argv);
        }
    }
    if (home == NULL || signal == NULL) {
        return keten_cli_usage("reply", "--home and --signal FILE|- are required");
    }
    if (argc - optind != 1) {
        return keten_cli_usage("reply", "give exactly one MSG_ID (the message to answer)");
    }
    if (strcmp(kind, "reply") != 0 && strcmp(kind, "feedback") != 0) {
        return keten_cli_usage(
            "reply", "--kind must be reply (to a query) or feedback (to a signal)");
    }
    if (dry_run && wait) {
        return keten_cli_usage("reply", "--dry-run sends nothing: there is nothing to --wait for");
    }
    int bad_key = keten_apiclient_idem_option("reply", idem_key, dry_run);
    if (bad_key != 0) {
        return bad_key;
    }
    const char *msg_id = argv[optind];
    if (strlen(msg_id) != 32 || strspn(msg_id, "0123456789abcdef") != 32) {
        return keten_cli_usage("reply", "MSG_ID must be 32 lowercase hex characters");
    }
    char *text = NULL;
    size_t len = 0;
    keten_err e = keten_apiclient_read_signal(signal, &text, &len);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    json_t *utf8 = json_stringn(text, len); /* NULL: not UTF-8, which JSON cannot be */
    const bool is_utf8 = utf8 != NULL;
    keten_apiclient_wipe_json(utf8);
    json_decref(utf8);
    if (!is_utf8 && !dry_run) {
        sodium_memzero(text, len);
        free(text);
        return keten_cli_usage("reply", "the signal is not valid UTF-8 text");
    }
    json_t *req = dry_run
        ? json_pack("{s:s, s:s, s:s}", "for", "reply", "msg_id", msg_id, "kind", kind)
        : json_pack("{s:s}", "kind", kind);
    int rc;
    if (req == NULL) {
        rc = keten_cli_error(KETEN_ERR_NOMEM);
    } else if (dry_run) {
        rc = keten_apiclient_dry_run(home, is_utf8 ? req : NULL, text, len, as_json);
    } else {
        char path[KETEN_APICLIENT_PATH_MAX];
        snprintf(path, sizeof path, "/v1/inbox/%s/reply", msg_id);
        rc = keten_apiclient_post_signal(
            home, path, req, text, len, idem_key, wait, timeout_s, as_json);
    }
    sodium_memzero(text, len);
    free(text);
    json_decref(req);
    return rc;
}
