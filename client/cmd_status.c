/* keten-node status: the node's state, or one message's. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"

static const char status_usage[]
    = "Usage: keten-node status --home DIR [MSG_ID] [--json]\n"
      "\n"
      "Without MSG_ID: the node's state: connected to the broker or not, the\n"
      "directory version and its expiry, its reference checkpoint (the latest the\n"
      "broker proved), the last witness checkpoint and whether it is witnessed, how\n"
      "many witness checkpoints the node keeps (all of the last hour, fewer of older\n"
      "ones: keten-node checkpoint --help), the outbox, alarms (with\n"
      "the broker frames kept as evidence; those acknowledged listed apart, with who\n"
      "acknowledged them, when and why) and warnings.\n"
      "With MSG_ID: a sent message's state (accepted: proven in the broker's log)\n"
      "and per recipient (pending, accepted, receipted, refused with the\n"
      "recipient's reason, expired, rejected with the broker's reason) and the\n"
      "replies to a query; or a received message's state.\n"
      "\n"
      "Exit codes (with --json too):\n"
      "  0  the node is connected to the broker and holds no alarm an operator has\n"
      "     not acknowledged (keten-node alarm ack)\n"
      "  1  the node is not connected to the broker (without MSG_ID), its daemon\n"
      "     is not running, its store is full (its filesystem has no space:\n"
      "     deliveries are not stored and sends fail until space is freed), or the\n"
      "     broker refuses it (\"keys replaced in version N: start with the new\n"
      "     keys\", or a certificate that is not current)\n"
      "  2  usage error\n"
      "  3  the node holds an alarm not acknowledged (a broker that rewrote its log\n"
      "     or sent a proof that does not hold, a withheld directory), or the broker refuses\n"
      "     it because it was revoked (\"revoked in version N: ask your\n"
      "     administrator\") or its log is shorter than the node's checkpoint\n"
      "\n"
      "Options:\n"
      "  --home DIR   the node's home (its daemon must be running)\n"
      "  --json       one JSON object\n"
      "  --help       show this help\n";

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

static long long num(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void print_node(const json_t *st)
{
    printf("node          %s (%s)%s\n", str(st, "node"), str(st, "role"),
        json_is_true(json_object_get(st, "member")) ? "" : "  NOT a current node of the directory");
    if (json_is_true(json_object_get(st, "connected"))) {
        printf("broker        %s, connected\n", str(st, "broker"));
    } else {
        printf("broker        %s, NOT connected%s%s\n", str(st, "broker"),
            str(st, "last_connect_error")[0] != '\0' ? ": " : "", str(st, "last_connect_error"));
    }
    const json_t *refused = json_object_get(st, "refused");
    if (refused != NULL) {
        printf("REFUSED       %s (alarm %s at %s%s)\n", str(refused, "action"),
            str(refused, "kind"), str(refused, "at"),
            json_is_true(json_object_get(refused, "confirmed")) ? ""
                                                                : "; not in this node's directory");
    }
    const json_t *d = json_object_get(st, "directory");
    printf("directory     version %lld, expires %s%s\n", num(d, "version"), str(d, "expires_at"),
        json_is_true(json_object_get(d, "fresh")) ? "" : " (EXPIRED)");
    if (str(d, "problem")[0] != '\0') {
        printf("              %s\n", str(d, "problem"));
    }
    if (num(d, "needed_version") > num(d, "version")) {
        printf("              a checkpoint names version %lld: not sending until it is installed\n",
            num(d, "needed_version"));
    }
    const json_t *cp = json_object_get(st, "checkpoint");
    if (json_object_get(cp, "tree_size") != NULL) {
        printf("checkpoint    reference tree size %lld\n", num(cp, "tree_size"));
    } else {
        printf("checkpoint    none accepted yet\n");
    }
    if (num(cp, "last_witness_size") > 0) {
        printf("witness       last witness checkpoint size %lld, %s (witnessed up to size %lld)\n",
            num(cp, "last_witness_size"),
            json_is_true(json_object_get(cp, "witnessed")) ? "witnessed" : "not yet witnessed",
            num(cp, "witnessed_size"));
    } else {
        printf("witness       no witness checkpoint yet\n");
    }
    if (num(cp, "kept") > 0) {
        printf("kept          %lld witness checkpoint(s), %lld of them as evidence of an alarm\n",
            num(cp, "kept"), num(cp, "kept_as_evidence"));
    }
    printf("outbox        %lld message(s) not yet acknowledged\n", num(st, "outbox"));
    const json_t *store = json_object_get(st, "store");
    if (json_is_true(json_object_get(store, "full"))) {
        printf("store         FULL since %s: %s\n", str(store, "full_since"), str(store, "detail"));
    } else if (json_object_get(store, "free_bytes") != NULL) {
        printf("store         %s, %lld bytes free on its filesystem\n", str(store, "dir"),
            num(store, "free_bytes"));
    }
    const json_t *alarms = json_object_get(st, "alarms");
    size_t acknowledged = 0, i;
    json_t *a;
    json_array_foreach(alarms, i, a)
    {
        acknowledged += json_is_true(json_object_get(a, "acknowledged")) ? 1 : 0;
    }
    if (json_array_size(alarms) == 0) {
        printf("alarms        none\n");
    } else {
        printf("alarms        %zu not acknowledged\n", json_array_size(alarms) - acknowledged);
        json_array_foreach(alarms, i, a)
        {
            if (!json_is_true(json_object_get(a, "acknowledged"))) {
                printf("  ALARM %lld %s at %s: %s\n", num(a, "id"), str(a, "kind"), str(a, "at"),
                    str(a, "detail"));
            }
        }
    }
    if (acknowledged > 0) {
        printf("acknowledged  %zu alarm(s)\n", acknowledged);
        json_array_foreach(alarms, i, a)
        {
            if (json_is_true(json_object_get(a, "acknowledged"))) {
                printf("  alarm %lld %s at %s: %s\n    acknowledged by %s at %s: %s\n",
                    num(a, "id"), str(a, "kind"), str(a, "at"), str(a, "detail"),
                    str(a, "acknowledged_by"), str(a, "acknowledged_at"), str(a, "note"));
            }
        }
    }
    if (json_array_size(alarms) > 0) {
        printf("evidence      %lld broker frame(s) kept in the store\n", num(st, "evidence"));
    }
    json_t *w;
    json_array_foreach(json_object_get(st, "warnings"), i, w)
    {
        printf("  warning: %s\n", json_string_value(w));
    }
}

static void print_message(const json_t *st)
{
    printf("msg_id        %s\n", str(st, "msg_id"));
    printf("direction     %s\n", str(st, "direction"));
    printf("kind          %s (%s, %s)\n", str(st, "kind"), str(st, "category"), str(st, "purpose"));
    if (strcmp(str(st, "direction"), "received") == 0) {
        printf("from          %s\n", str(st, "from"));
        printf("received_at   %s\n", str(st, "received_at"));
        printf("handled       %s\n", json_is_true(json_object_get(st, "handled")) ? "yes" : "no");
    } else {
        printf("state         %s", str(st, "state"));
        if (json_object_get(st, "leaf_index") != NULL) {
            printf(" (audit leaf %lld)", num(st, "leaf_index"));
        }
        if (json_object_get(st, "reason") != NULL) {
            printf(" %s", str(st, "reason"));
            if (json_object_get(st, "rule") != NULL) {
                printf(" rule %lld", num(st, "rule"));
            }
            printf(": %s", str(st, "detail"));
        }
        printf("\n");
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(st, "recipients"), i, r)
        {
            printf("  %-20s %-10s %s%s\n", str(r, "id"), str(r, "state"),
                json_object_get(r, "receipted_at") != NULL ? str(r, "receipted_at")
                                                           : str(r, "reason"),
                json_is_true(json_object_get(r, "replied")) ? "  replied" : "");
        }
        json_array_foreach(json_object_get(st, "replies"), i, r)
        {
            printf("  reply %s from %s at %s\n", str(r, "msg_id"), str(r, "from"),
                str(r, "received_at"));
        }
    }
}

int cmd_status(int argc, char **argv)
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
            fputs(status_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("status", c, argc, argv);
        }
    }
    if (home == NULL) {
        return keten_cli_usage("status", "--home DIR is required");
    }
    if (argc - optind > 1) {
        return keten_cli_usage("status", "give at most one MSG_ID");
    }
    char path[KETEN_APICLIENT_PATH_MAX] = "/v1/node";
    if (argc - optind == 1) {
        char id[KETEN_APICLIENT_MSG_ID_HEX];
        if (!keten_apiclient_msg_id(argv[optind], id)) {
            return keten_apiclient_bad_msg_id(home);
        }
        snprintf(path, sizeof path, "/v1/messages/%s", id);
    }
    json_t *reply = NULL;
    long status = 0;
    keten_err e = keten_apiclient_call(
        home, "GET", path, NULL, NULL, KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, reply);
    if (rc == KETEN_EXIT_OK) {
        json_t *st = json_object_get(reply, "status");
        /* Alarms an operator acknowledged (keten-node alarm ack) do not count. */
        json_t *alarms = json_object_get(st, "alarms");
        bool alarmed = json_integer_value(alarms) > 0;
        size_t i;
        json_t *a;
        json_array_foreach(alarms, i, a)
        {
            alarmed = alarmed || !json_is_true(json_object_get(a, "acknowledged"));
        }
        if (as_json) {
            if (keten_cli_json_print(json_incref(st)) != KETEN_OK) {
                rc = KETEN_EXIT_FAILURE;
            }
        } else if (json_object_get(st, "msg_id") != NULL) {
            print_message(st);
        } else {
            print_node(st);
        }
        const json_t *refused = json_object_get(st, "refused");
        if (refused != NULL) {
            fprintf(stderr, "%s: the broker refuses this node: %s\n", keten_cli_prog(),
                str(refused, "action"));
            int code = (int)json_integer_value(json_object_get(refused, "exit"));
            rc = code == KETEN_EXIT_VERIFY ? KETEN_EXIT_VERIFY : KETEN_EXIT_FAILURE;
        }
        const bool offline = json_object_get(st, "msg_id") == NULL
            && !json_is_true(json_object_get(st, "connected"));
        if (rc == KETEN_EXIT_OK && offline) {
            const char *why = str(st, "last_connect_error");
            fprintf(stderr, "%s: the node is not connected to the broker %s%s%s\n",
                keten_cli_prog(), str(st, "broker"), why[0] != '\0' ? ": " : "", why);
            rc = KETEN_EXIT_FAILURE;
        }
        if (alarmed) {
            if (!as_json && json_object_get(st, "msg_id") != NULL) {
                fprintf(stderr,
                    "%s: this node has raised alarms: see keten-node status --home %s\n",
                    keten_cli_prog(), home);
            }
            /* An alarm outweighs a lost connection or a refusal. */
            rc = rc == KETEN_EXIT_OK || refused != NULL || offline ? KETEN_EXIT_VERIFY : rc;
        }
        const json_t *store = json_object_get(st, "store");
        if (json_is_true(json_object_get(store, "full"))) {
            fprintf(stderr, "%s: %s\n", keten_cli_prog(), str(store, "detail"));
            rc = rc == KETEN_EXIT_OK ? KETEN_EXIT_FAILURE : rc;
        }
    }
    json_decref(reply);
    return rc;
}
