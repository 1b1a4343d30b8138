/* keten-node checkpoint: the checkpoint this node keeps as evidence. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiclient.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

static const char checkpoint_usage[]
    = "Usage: keten-node checkpoint --home DIR [--all] [--out FILE] [--json]\n"
      "\n"
      "Print the newest checkpoint of the broker's audit log that this node has\n"
      "accepted and that a quorum of partners has cosigned (witnessed), with the\n"
      "cosignatures the node saw; if none is witnessed yet, the newest accepted\n"
      "one. It is a C2SP signed note. Give it to an auditor, who checks the\n"
      "broker's log against it: keten-audit verify --checkpoint FILE.\n"
      "\n"
      "With --all: the checkpoints this node keeps, in tree-size order, each with the\n"
      "cosignatures the node saw, one note after the other in one file: the thinned\n"
      "series of older ones (at most 20000, the oldest first, and every one kept as an\n"
      "alarm's evidence), then the newest 1000 of the last hour.\n"
      "keten-audit verify --checkpoint FILE checks each of them; it never reads a\n"
      "node's store itself.\n"
      "\n"
      "What the node keeps: every witness checkpoint (the ones partners cosign) it\n"
      "accepted in the last hour; of older ones, one per minute until they are\n"
      "checkpoint-keep-days old (default 7), one per hour until they are\n"
      "checkpoint-hourly-days old (default 90), then one per day, for ever (the\n"
      "first witnessed one of each minute, hour or day, else the first one).\n"
      "It always keeps the newest, the newest one witnessed by a quorum, and those\n"
      "kept as evidence of an alarm. Any kept checkpoint made after a record the\n"
      "broker later rewrote shows the rewrite to an auditor.\n"
      "\n"
      "Options:\n"
      "  --home DIR   the node's home (its daemon must be running)\n"
      "  --all        the checkpoints the node keeps, not only the newest\n"
      "  --out FILE   write the note to FILE (mode 0644) instead of printing it\n"
      "  --json       print {\"tree_size\", \"witnessed\", \"note\"} as JSON (--all: a\n"
      "               JSON array of them)\n"
      "  --help       show this help\n";

/* --all: the notes one after the other (each ends with its signature
 * lines), to out or standard output; or the JSON array. */
static keten_err write_all(const json_t *list, const char *out, bool as_json)
{
    if (!json_is_array(list) || json_array_size(list) == 0) {
        return keten_err_set(KETEN_ERR_MALFORMED, "the daemon sent no checkpoints");
    }
    if (as_json && out == NULL) {
        char *text = json_dumps(list, JSON_COMPACT);
        if (text == NULL) {
            return KETEN_ERR_NOMEM;
        }
        puts(text);
        free(text);
        return KETEN_OK;
    }
    size_t len = 0, i;
    json_t *cp;
    json_array_foreach(list, i, cp)
    {
        const char *note = json_string_value(json_object_get(cp, "note"));
        if (note == NULL || note[0] == '\0' || note[strlen(note) - 1] != '\n') {
            return keten_err_set(KETEN_ERR_MALFORMED, "the daemon sent a checkpoint without a note");
        }
        len += strlen(note);
    }
    char *all = malloc(len + 1);
    if (all == NULL) {
        return KETEN_ERR_NOMEM;
    }
    size_t off = 0;
    json_array_foreach(list, i, cp)
    {
        const char *note = json_string_value(json_object_get(cp, "note"));
        size_t n = strlen(note);
        memcpy(all + off, note, n);
        off += n;
    }
    all[off] = '\0';
    keten_err e = KETEN_OK;
    if (out != NULL) {
        e = keten_file_write(out, all, off, 0644, false);
        if (e == KETEN_OK) {
            fprintf(stderr, "keten-node: wrote %zu checkpoints, up to tree size %lld, to %s\n",
                json_array_size(list),
                (long long)json_integer_value(
                    json_object_get(json_array_get(list, json_array_size(list) - 1), "tree_size")),
                out);
        }
    } else {
        fputs(all, stdout);
    }
    free(all);
    return e;
}

int cmd_checkpoint(int argc, char **argv)
{
    static const struct option opts[] = {
        { "home", required_argument, NULL, 'H' },
        { "out", required_argument, NULL, 'o' },
        { "json", no_argument, NULL, 'j' },
        { "all", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *home = NULL, *out = NULL;
    bool as_json = false, all = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'a':
            all = true;
            break;
        case 'h':
            fputs(checkpoint_usage, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error("checkpoint", c, argc, argv);
        }
    }
    if (home == NULL) {
        return keten_cli_usage("checkpoint", "--home DIR is required");
    }
    if (argc != optind) {
        return keten_cli_usage("checkpoint", "unexpected argument '%s'", argv[optind]);
    }
    json_t *reply = NULL;
    long status = 0;
    keten_err e = keten_apiclient_call(home, "GET", all ? "/v1/checkpoints" : "/v1/checkpoint",
        NULL, NULL, KETEN_APICLIENT_TIMEOUT_MS, &status, &reply);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = keten_apiclient_check(status, reply);
    if (rc != KETEN_EXIT_OK) {
        json_decref(reply);
        return rc;
    }
    if (all) {
        e = write_all(json_object_get(reply, "checkpoints"), out, as_json);
        json_decref(reply);
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    json_t *cp = json_object_get(reply, "checkpoint");
    const char *note = json_string_value(json_object_get(cp, "note"));
    if (note == NULL) {
        json_decref(reply);
        return keten_cli_error(keten_err_set(KETEN_ERR_MALFORMED, "the daemon sent no note"));
    }
    if (out != NULL) {
        e = keten_file_write(out, note, strlen(note), 0644, false);
        if (e == KETEN_OK) {
            fprintf(stderr, "keten-node: wrote the %s checkpoint of tree size %lld to %s\n",
                json_is_true(json_object_get(cp, "witnessed")) ? "witnessed" : "(not yet witnessed)",
                (long long)json_integer_value(json_object_get(cp, "tree_size")), out);
        }
    } else if (as_json) {
        char *text = json_dumps(cp, JSON_COMPACT);
        if (text == NULL) {
            e = KETEN_ERR_NOMEM;
        } else {
            puts(text);
            free(text);
        }
    } else {
        fputs(note, stdout);
    }
    json_decref(reply);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
