/* keten-node show: one received message in full. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char show_usage[]
    = "Usage: keten-node show --home DIR MSG_ID [--json]\n"
      "\n"
      "Show a received message: sender, kind, category, purpose, times, the leaf of\n"
      "the broker's audit log that holds it, whether it was handled, the msg_id of\n"
      "this node's reply (reply_msg_id: a query it replied to), and the signal.\n"
      "\n"
      "Options:\n"
      "  --home DIR   the node's home (its daemon must be running)\n"
      "  --json       one JSON object\n"
      "  --help       show this help\n";

int cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL;
    bool as_json = false;
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
        case 'h':
            fputs(show_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("show", c, argc, argv);
        }
    }
    if (home == NULL) {
        return keten_cli_usage("show", "--home DIR is required");
    }
    if (argc - optind != 1) {
        return keten_cli_usage("show", "give exactly one MSG_ID");
    }
    char id[KETEN_APICLIENT_MSG_ID_HEX], path[KETEN_APICLIENT_PATH_MAX];
    if (!keten_apiclient_msg_id(argv[optind], id)) {
        return keten_apiclient_bad_msg_id(home);
    }
    snprintf(path, sizeof path, "/v1/inbox/%s", id);
    json_t *reply = NULL;
    long status = 0;
    keten_err e = keten_apiclient_call(
        home, "GET", path, NULL, NULL, KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, reply);
    json_t *m = json_object_get(reply, "message");
    if (rc == KETEN_EXIT_OK && as_json) {
        rc = keten_cli_json_print(json_incref(m)) == KETEN_OK ? KETEN_EXIT_OK : KETEN_EXIT_FAILURE;
    } else if (rc == KETEN_EXIT_OK) {
        const char *fields[] = { "msg_id", "from", "kind", "category", "purpose", "created_at",
            "received_at", "expires_at", "in_reply_to" };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            const char *v = json_string_value(json_object_get(m, fields[i]));
            if (v != NULL) {
                printf("%-12s %s\n", fields[i], v);
            }
        }
        printf("%-12s %lld\n", "leaf_index",
            (long long)json_integer_value(json_object_get(m, "leaf_index")));
        printf("%-12s %s\n", "handled", json_is_true(json_object_get(m, "handled")) ? "yes" : "no");
        const char *reply_id = json_string_value(json_object_get(m, "reply_msg_id"));
        if (reply_id != NULL) {
            printf("%-12s %s\n", "reply_msg_id", reply_id);
        }
        char *sig = json_dumps(json_object_get(m, "signal"), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("signal\n%s\n", sig != NULL ? sig : "{}");
        if (sig != NULL) {
            sodium_memzero(sig, strlen(sig));
        }
        free(sig);
    }
    keten_apiclient_wipe_json(reply); /* the signal */
    json_decref(reply);
    return rc;
}
