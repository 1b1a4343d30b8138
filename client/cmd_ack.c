/* keten-node ack: the application has handled a received message. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char ack_usage[]
    = "Usage: keten-node ack --home DIR MSG_ID\n"
      "\n"
      "Mark a received message as handled by the application: `inbox` no longer\n"
      "lists it (`inbox --all` still does). This is local to the node; the sender\n"
      "already has the node's signed receipt. Prints \"acknowledged MSG_ID\".\n"
      "A message acknowledged before is refused (exit 1): \"message MSG_ID was\n"
      "already acknowledged at T\".\n"
      "\n"
      "Options:\n"
      "  --home DIR   the node's home (its daemon must be running)\n"
      "  --help       show this help\n";

int cmd_ack(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'h':
            fputs(ack_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("ack", c, argc, argv);
        }
    }
    if (home == NULL) {
        return keten_cli_usage("ack", "--home DIR is required");
    }
    if (argc - optind != 1) {
        return keten_cli_usage("ack", "give exactly one MSG_ID");
    }
    char id[KETEN_APICLIENT_MSG_ID_HEX], path[KETEN_APICLIENT_PATH_MAX];
    if (!keten_apiclient_msg_id(argv[optind], id)) {
        return keten_apiclient_bad_msg_id(home);
    }
    snprintf(path, sizeof path, "/v1/inbox/%s/ack", id);
    json_t *reply = NULL;
    long status = 0;
    keten_err e = keten_apiclient_call(
        home, "POST", path, NULL, NULL, KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, reply);
    if (rc == KETEN_EXIT_OK) {
        printf("acknowledged %s\n", argv[optind]);
    }
    json_decref(reply);
    return rc;
}
