/*
 * keten-keys set-admins: change the administrators and threshold of the next
 * directory version (docs/protocol.md section 9.3). That version must then be signed by
 * k of the current administrators AND k' of the new ones, so that a broken
 * rotation cannot lock the network out.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admindir.h"
#include "adminkey.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define CMD "set-admins"

static const char usage_text[]
    = "Usage: keten-keys set-admins --dir ADMIN --threshold K --admin-pub FILE... [--json]\n"
      "\n"
      "Replace the administrators and the threshold in the next directory version\n"
      "(for example when an administrator leaves or a key may be lost). The new\n"
      "set is the complete list: include the administrators who stay. The version\n"
      "that carries the change needs K signatures of the current administrators\n"
      "and K signatures of the new ones (publish, then sign until both are met).\n"
      "The names in the new .pub files are added to ADMIN/names.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --threshold K          signatures the new set needs (1..N)\n"
      "  --admin-pub FILE       a new administrator's public key (from admin-keygen);\n"
      "                         repeat it, or give a comma-separated list\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

int cmd_set_admins(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "threshold", required_argument, NULL, 't' },
        { "admin-pub", required_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL, *threshold_arg = NULL;
    char *pubs[KETEN_MAX_ADMINS];
    size_t n_pubs = 0;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 't':
            threshold_arg = optarg;
            break;
        case 'a':
            if (n_pubs == KETEN_MAX_ADMINS) {
                return keten_cli_usage(
                    CMD, "--admin-pub given more than %d times", KETEN_MAX_ADMINS);
            }
            pubs[n_pubs++] = optarg;
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
    if (threshold_arg == NULL) {
        return keten_cli_usage(CMD, "--threshold K is required");
    }
    if (n_pubs == 0) {
        return keten_cli_usage(CMD, "give the new administrators with --admin-pub FILE...");
    }
    uint64_t threshold = 0;
    if (!keten_cli_parse_uint(threshold_arg, 0, UINT32_MAX, &threshold)) {
        return keten_cli_usage(CMD, "--threshold '%s' is not a number", threshold_arg);
    }

    adminkey_set next, current;
    adminkey_name names[KETEN_MAX_ADMINS];
    adminnames *known = NULL;
    admindir *ad = NULL;
    keten_err e = adminkey_pub_read_list(pubs, n_pubs, &next, names);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    if (threshold < 1 || threshold > next.n) {
        return keten_cli_usage(CMD,
            "--threshold %llu is outside 1..%zu (the number of administrators given)",
            (unsigned long long)threshold, next.n);
    }
    next.threshold = (uint32_t)threshold;
    if ((e = admindir_open(dir, &ad)) != KETEN_OK) {
        goto out;
    }
    uint64_t version = admindir_next_version(ad);
    if ((e = admindir_signing_set(ad, version, &current)) != KETEN_OK) {
        goto out;
    }
    e = keten_dirbuild_set_admins(
        ad->draft, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])next.keys, next.n, next.threshold);
    if (e != KETEN_OK || (e = admindir_load_names(ad, &known)) != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < next.n; i++) {
        if (names[i][0] != '\0'
            && (e = adminnames_set(known, next.keys[i], names[i])) != KETEN_OK) {
            goto out;
        }
    }
    /* The names first: should the state fail, a name too many is harmless. */
    if ((e = admindir_save_names(ad, known)) != KETEN_OK || (e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }
    for (size_t i = 0; i < next.n; i++) {
        if (adminnames_find(known, next.keys[i]) == NULL) {
            char fpr[ADMINKEY_FPR_BYTES];
            adminkey_fingerprint(next.keys[i], fpr);
            keten_cli_warn("the administrator key with fingerprint %s has no name: outputs show "
                           "its fingerprint only (admin-keygen --name sets one)",
                fpr);
        }
    }
    bool change = !adminkey_set_equal(&current, &next);
    if (json) {
        json_t *admins = json_array(), *described = json_array();
        for (size_t i = 0; admins != NULL && described != NULL && i < next.n; i++) {
            char b64[KETEN_CLI_KEY_B64_BYTES], fpr[ADMINKEY_FPR_BYTES];
            keten_cli_key_b64(next.keys[i], b64);
            adminkey_fingerprint(next.keys[i], fpr);
            json_array_append_new(admins, json_string(b64));
            json_array_append_new(described,
                json_pack("{s:s, s:s, s:s?, s:b}", "key", b64, "fingerprint", fpr, "name",
                    adminnames_find(known, next.keys[i]), "new",
                    adminkey_set_find(&current, next.keys[i]) < 0));
        }
        e = keten_cli_json_print(
            json_pack("{s:I, s:o, s:o, s:I, s:b, s:I}", "version", (json_int_t)version, "admins",
                admins, "administrators", described, "threshold", (json_int_t)next.threshold,
                "admin_change", change, "current_threshold", (json_int_t)current.threshold));
    } else {
        printf("version %llu will have %zu administrators, threshold %u:\n",
            (unsigned long long)version, next.n, (unsigned)next.threshold);
        for (size_t i = 0; i < next.n; i++) {
            char label[ADMINNAMES_LABEL_BYTES], b64[KETEN_CLI_KEY_B64_BYTES];
            adminnames_label(known, next.keys[i], label);
            keten_cli_key_b64(next.keys[i], b64);
            bool named = adminnames_find(known, next.keys[i]) != NULL;
            printf("  %s%s%s%s\n", label, named ? ", key " : "", named ? b64 : "",
                adminkey_set_find(&current, next.keys[i]) >= 0 ? "" : " (new)");
        }
        if (change) {
            printf("it needs %u signatures of the current administrators and %u of the new "
                   "ones\n",
                (unsigned)current.threshold, (unsigned)next.threshold);
        } else {
            printf("the same administrators and threshold as now: nothing changes\n");
        }
    }
out:
    adminnames_destroy(&known);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
