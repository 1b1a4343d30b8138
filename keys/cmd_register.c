/*
 * keten-keys register: register the categories (signal types) and purposes
 * that signals may carry. Only registered values are accepted, because they
 * end up in the indelible audit log.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admindir.h"
#include "cli.h"
#include "cmd.h"
#include "render.h"
#include "util.h"

#define CMD "register"

static const char usage_text[]
    = "Usage: keten-keys register --dir ADMIN [--category C[,C]] [--purpose P[,P]] [--json]\n"
      "\n"
      "Register categories (the signal's \"type\", e.g. woonfraude) and purposes\n"
      "(e.g. riec-convenant-2024/art-5) in the next directory version. Signals\n"
      "may only carry registered values: the broker logs them in an audit log\n"
      "that can never be changed, so free text must not reach it. Values are\n"
      "1 to 64 of a-z, 0-9, '-', '.', '/', starting with a letter or digit.\n"
      "Registering a value that exists changes nothing.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --category C[,C]       categories to register (repeatable)\n"
      "  --purpose P[,P]        purposes to register (repeatable)\n"
      "  --json                 print the registered values as JSON\n"
      "  --help                 show this help\n";

#define MAX_ARGS 64

static keten_err register_list(keten_dirbuild *draft, const char *arg, bool category)
{
    char **items = NULL;
    size_t n = 0;
    const char *what = category ? "--category" : "--purpose";
    keten_err e = keten_cli_split(arg, what, &items, &n);
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        if (!keten_label_valid(items[i])) {
            e = keten_err_set(KETEN_ERR_BAD_NAME,
                "%s '%s' is not a valid label: use 1 to %d of a-z, 0-9, '-', '.', '/', starting "
                "with a letter or digit",
                what, items[i], KETEN_LABEL_MAX);
            break;
        }
        e = keten_dirbuild_register(draft, category ? items[i] : NULL, category ? NULL : items[i]);
    }
    keten_cli_split_free(&items, n);
    return e;
}

static void print_list(const char *title, char **v, size_t n)
{
    printf("%s:", title);
    if (n == 0) {
        printf(" (none)");
    }
    for (size_t i = 0; i < n; i++) {
        printf(" %s", v[i]);
    }
    printf("\n");
}

int cmd_register(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "category", required_argument, NULL, 'c' },
        { "purpose", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL;
    const char *cats[MAX_ARGS], *purps[MAX_ARGS];
    size_t n_cats = 0, n_purps = 0;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'c':
            if (n_cats == MAX_ARGS) {
                return keten_cli_usage(CMD, "--category given too often; use comma lists");
            }
            cats[n_cats++] = optarg;
            break;
        case 'p':
            if (n_purps == MAX_ARGS) {
                return keten_cli_usage(CMD, "--purpose given too often; use comma lists");
            }
            purps[n_purps++] = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return KETEN_EXIT_OK;
        default:
            return keten_cli_getopt_error(CMD, c, argc, argv);
        }
    }
    if (optind < argc) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL) {
        return keten_cli_usage(CMD, "--dir ADMIN is required");
    }
    if (n_cats == 0 && n_purps == 0) {
        return keten_cli_usage(CMD, "give --category and/or --purpose");
    }

    admindir *ad = NULL;
    keten_err e = admindir_open(dir, &ad);
    for (size_t i = 0; e == KETEN_OK && i < n_cats; i++) {
        e = register_list(ad->draft, cats[i], true);
    }
    for (size_t i = 0; e == KETEN_OK && i < n_purps; i++) {
        e = register_list(ad->draft, purps[i], false);
    }
    if (e == KETEN_OK) {
        e = admindir_save(ad);
    }
    if (e == KETEN_OK) {
        const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
        if (json) {
            e = keten_cli_json_print(
                json_pack("{s:I, s:o, s:o}", "version", (json_int_t)doc->version, "categories",
                    render_strings_json(doc->categories, doc->n_categories), "purposes",
                    render_strings_json(doc->purposes, doc->n_purposes)));
        } else {
            printf("registered in the next directory version %llu:\n",
                (unsigned long long)doc->version);
            print_list("  categories", doc->categories, doc->n_categories);
            print_list("  purposes", doc->purposes, doc->n_purposes);
        }
    }
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
