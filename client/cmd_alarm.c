/* keten-node alarm: list the node's alarms, and acknowledge one once it has
 * been dealt with, through the daemon's Unix socket (the node's operator
 * only: the node records the Unix user the socket names). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define ALARM_ID_DIGITS_MAX 19
#define NOTE_BYTES_MAX 800 /* 200 characters of UTF-8; the node checks the characters */

static const char alarm_usage[]
    = "Usage: keten-node alarm --home DIR list [--json]\n"
      "       keten-node alarm --home DIR ack ID --note TEXT [--json]\n"
      "\n"
      "The alarms this node holds (the evidence that the broker misbehaved, or a\n"
      "state the node cannot trust its peers in; keten-node(8), ALARMS), and their\n"
      "acknowledgement by the node's operator once an alarm has been dealt with.\n"
      "These commands talk to the running daemon through HOME/api.sock only: an\n"
      "alarm cannot be acknowledged over the TCP listener.\n"
      "\n"
      "  list   every stored alarm, oldest first: its number (ID), kind, when it was\n"
      "         raised, its detail, and whether, when and by whom it was\n"
      "         acknowledged, with the note\n"
      "  ack    mark alarm ID as dealt with: the node records the time, the Unix\n"
      "         user running this command and the note. The alarm, its detail and\n"
      "         the broker frames kept as its evidence stay; it no longer makes\n"
      "         status exit 3 nor counts in keten_node_alarms. An alarm raised later\n"
      "         (of any kind) counts again. An alarm whose state still holds (an\n"
      "         expired directory, a directory version not yet installed) is not\n"
      "         acknowledged until it no longer does; a refusal by the broker is\n"
      "         shown by status as long as it holds, acknowledged or not.\n"
      "\n"
      "Options:\n"
      "  --home DIR    the node's home (its daemon must be running)\n"
      "  --note TEXT   what was done about the alarm (required for ack: 1 to 200\n"
      "                characters on one line), e.g. \"broker restored from the\n"
      "                backup of 2026-12-01, log verified; ticket INC-4711\"\n"
      "  --json        print JSON (list: {\"alarms\":[...]}; ack: {\"alarm\":{...}})\n"
      "  --help        show this help\n";

static const char *str_or(const json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : dflt;
}

/* One alarm, as list prints it. */
static void print_alarm(const json_t *a)
{
    printf("%-6lld %-24s %-24s %s\n", (long long)json_integer_value(json_object_get(a, "id")),
        str_or(a, "kind", "?"), str_or(a, "at", "?"),
        json_is_true(json_object_get(a, "acknowledged")) ? "acknowledged" : "NOT ACKNOWLEDGED");
    printf("       %s\n", str_or(a, "detail", ""));
    if (json_is_true(json_object_get(a, "acknowledged"))) {
        printf("       acknowledged by %s at %s: %s\n", str_or(a, "acknowledged_by", "?"),
            str_or(a, "acknowledged_at", "?"), str_or(a, "note", ""));
    }
}

static int alarm_list(const char *home, bool as_json)
{
    json_t *reply = NULL;
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_apiclient_request(home, "GET", "/v1/alarms", NULL, NULL, &reply, &rc);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const json_t *list = json_object_get(reply, "alarms");
    if (rc != KETEN_EXIT_OK) {
        /* the problem is printed */
    } else if (!json_is_array(list)) {
        fprintf(
            stderr, "%s: the node's answer to GET /v1/alarms holds no list\n", keten_cli_prog());
        rc = KETEN_EXIT_FAILURE;
    } else if (as_json) {
        if (keten_cli_json_print(json_incref(reply)) != KETEN_OK) {
            rc = keten_cli_error(KETEN_ERR_IO);
        }
    } else if (json_array_size(list) == 0) {
        printf("no alarms\n");
    } else {
        printf("%-6s %-24s %-24s %s\n", "ID", "KIND", "RAISED", "STATE");
        size_t i;
        json_t *a;
        json_array_foreach(list, i, a)
        {
            print_alarm(a);
        }
    }
    json_decref(reply);
    return rc;
}

static int alarm_ack(const char *home, const char *id, const char *note, bool as_json)
{
    size_t n = strlen(id);
    if (n == 0 || n > ALARM_ID_DIGITS_MAX || id[0] == '0' || strspn(id, "0123456789") != n) {
        return keten_cli_usage("alarm", "ID is the alarm's number (keten-node alarm list)");
    }
    if (note == NULL) {
        return keten_cli_usage(
            "alarm", "ack needs --note TEXT: what was done about the alarm (1 to 200 characters)");
    }
    if (note[0] == '\0' || strlen(note) > NOTE_BYTES_MAX) {
        return keten_cli_usage("alarm", "--note: 1 to 200 characters saying what was done");
    }
    json_t *body = json_pack("{s:s}", "note", note);
    if (body == NULL) { /* also: a note that is not UTF-8 */
        return keten_cli_usage("alarm", "--note: text of valid UTF-8 (1 to 200 characters)");
    }
    char path[64];
    snprintf(path, sizeof path, "/v1/alarms/%s/ack", id);
    json_t *reply = NULL;
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_apiclient_request(home, "POST", path, body, NULL, &reply, &rc);
    json_decref(body);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    const json_t *a = json_object_get(reply, "alarm");
    if (rc != KETEN_EXIT_OK) {
        /* the problem is printed */
    } else if (!json_is_object(a)) {
        fprintf(stderr, "%s: the node's answer to the acknowledgement holds no alarm\n",
            keten_cli_prog());
        rc = KETEN_EXIT_FAILURE;
    } else if (as_json) {
        if (keten_cli_json_print(json_incref(reply)) != KETEN_OK) {
            rc = keten_cli_error(KETEN_ERR_IO);
        }
    } else {
        printf("alarm %s (%s) acknowledged by %s at %s\n", id, str_or(a, "kind", "?"),
            str_or(a, "acknowledged_by", "?"), str_or(a, "acknowledged_at", "?"));
    }
    json_decref(reply);
    return rc;
}

int cmd_alarm(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "note", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *note = NULL;
    bool as_json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'n':
            note = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            fputs(alarm_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("alarm", c, argc, argv);
        }
    }
    if (argc - optind < 1) {
        return keten_cli_usage("alarm", "give a subcommand: list or ack");
    }
    const char *sub = argv[optind];
    int rest = argc - optind - 1;
    if (home == NULL) {
        return keten_cli_usage("alarm", "--home DIR is required");
    }
    if (strcmp(sub, "list") == 0) {
        if (rest != 0 || note != NULL) {
            return keten_cli_usage("alarm", "list takes no arguments and no --note");
        }
        return alarm_list(home, as_json);
    }
    if (strcmp(sub, "ack") == 0) {
        if (rest != 1) {
            return keten_cli_usage("alarm", "ack takes exactly one ID (keten-node alarm list)");
        }
        return alarm_ack(home, argv[optind + 1], note, as_json);
    }
    return keten_cli_usage("alarm", "unknown subcommand '%s': use list or ack", sub);
}
