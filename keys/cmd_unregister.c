/*
 * keten-keys unregister: remove a category or purpose registered by mistake
 * (a typo) from the draft of the next version. Refused while a policy rule
 * names the value; versions already published keep it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admindir.h"
#include "cli.h"
#include "cmd.h"
#include "render.h"
#include "util.h"

#define CMD "unregister"
#define MAX_ARGS 64

static const char usage_text[]
    = "Usage: keten-keys unregister --dir ADMIN [--category C[,C]] [--purpose P[,P]]\n"
      "                             [--json]\n"
      "\n"
      "Remove categories or purposes from the draft of the next directory version,\n"
      "for example a value registered with a typo. A value that a policy rule\n"
      "names is refused, with that rule: remove the rule first (policy remove).\n"
      "Only the draft changes: versions already published keep the value, and\n"
      "signals that carried it stay in the audit log. All values given are removed,\n"
      "or none.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --category C[,C]       categories to remove (repeatable)\n"
      "  --purpose P[,P]        purposes to remove (repeatable)\n"
      "  --json                 print the registered values left as JSON\n"
      "  --help                 show this help\n";

/* "rule 3: allow from ... purpose all" without the newline, into out. */
static void rule_text(const Keten__Directory *doc, uint32_t id, char *out, size_t size)
{
    snprintf(out, size, "rule %u", (unsigned)id);
    for (size_t i = 0; i < doc->n_rules; i++) {
        if (doc->rules[i]->id != id) {
            continue;
        }
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f == NULL) {
            return;
        }
        render_rule_text(f, doc->rules[i]);
        if (fclose(f) == 0 && text != NULL) {
            if (len > 0 && text[len - 1] == '\n') {
                text[len - 1] = '\0';
            }
            snprintf(out, size, "%s", text);
        }
        free(text);
        return;
    }
}

static keten_err unregister_list(admindir *ad, const char *arg, bool category)
{
    char **items = NULL;
    size_t n = 0;
    const char *what = category ? "--category" : "--purpose";
    keten_err e = keten_cli_split(arg, what, &items, &n);
    for (size_t i = 0; e == KETEN_OK && i < n; i++) {
        uint32_t rule = 0;
        e = keten_dirbuild_unregister(
            ad->draft, category ? items[i] : NULL, category ? NULL : items[i], &rule);
        if (e == KETEN_ERR_INVALID && rule != 0) {
            char text[512];
            rule_text(keten_dirbuild_doc(ad->draft), rule, text, sizeof text);
            e = keten_err_set(e,
                "%s '%s' is still used by %s; remove that rule first (keten-keys policy --dir "
                "%s remove %u), or leave the value registered",
                category ? "category" : "purpose", items[i], text, ad->path, (unsigned)rule);
        }
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

int cmd_unregister(int argc, char **argv)
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
        e = unregister_list(ad, cats[i], true);
    }
    for (size_t i = 0; e == KETEN_OK && i < n_purps; i++) {
        e = unregister_list(ad, purps[i], false);
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
            printf("unregistered; what stays registered in the next directory version %llu:\n",
                (unsigned long long)doc->version);
            print_list("  categories", doc->categories, doc->n_categories);
            print_list("  purposes", doc->purposes, doc->n_purposes);
            if (doc->version == 2) {
                printf("version 1, already published, keeps what it registered\n");
            } else if (doc->version > 2) {
                printf("versions 1 to %llu, already published, keep what they registered\n",
                    (unsigned long long)(doc->version - 1));
            }
        }
    }
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
