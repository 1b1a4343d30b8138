/*
 * keten-keys revoke: take a node's certificate out of the next directory
 * version. Once that version is published and signed, the broker refuses the
 * node's connections and messages and nodes stop encrypting to it.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "admindir.h"
#include "cli.h"
#include "cmd.h"
#include "util.h"

#define CMD "revoke"

static const char usage_text[]
    = "Usage: keten-keys revoke --dir ADMIN NODE_ID --reason TEXT [--json]\n"
      "\n"
      "Revoke the current certificate of NODE_ID in the next directory version.\n"
      "It takes effect for everyone once that version is published and signed\n"
      "(publish, then sign). The reason is kept in the directory.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --reason TEXT          why (at most 256 bytes, printable); for a stolen or\n"
      "                         leaked key include the word \"compromise\"\n"
      "                         (\"key-compromise: laptop stolen\"): its receipts\n"
      "                         then never count\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

int cmd_revoke(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "reason", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL, *reason = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'r':
            reason = optarg;
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
    if (dir == NULL) {
        return keten_cli_usage(CMD, "--dir ADMIN is required");
    }
    if (optind >= argc) {
        return keten_cli_usage(CMD, "give the NODE_ID to revoke");
    }
    if (argc - optind > 1) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind + 1]);
    }
    const char *id = argv[optind];
    if (!keten_name_valid(id)) {
        return keten_cli_usage(
            CMD, "'%s' is not a node id ([a-z0-9-], at most %d)", id, KETEN_NAME_MAX);
    }
    if (reason == NULL || reason[0] == '\0') {
        return keten_cli_usage(CMD, "--reason TEXT is required: say why, it is kept");
    }
    if (strlen(reason) > KETEN_REASON_MAX || !printable(reason)) {
        return keten_cli_usage(
            CMD, "--reason must be printable text of at most %d bytes", KETEN_REASON_MAX);
    }

    admindir *ad = NULL;
    uint64_t now = keten_now_ms();
    uint64_t serial = 0;
    keten_err e = admindir_open(dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    const Keten__Directory *doc = keten_dirbuild_doc(ad->draft);
    const Keten__NodeCert *cert = NULL;
    for (size_t i = 0; i < doc->n_nodes; i++) {
        if (strcmp(doc->nodes[i]->id, id) == 0) {
            cert = doc->nodes[i];
        }
    }
    if (cert == NULL) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "%s has no current certificate in the next version of %s; check the id with "
            "keten-keys show",
            id, dir);
        goto out;
    }
    serial = cert->serial;
    bool broker = strcmp(cert->role, "broker") == 0;
    if ((e = keten_dirbuild_revoke(ad->draft, id, reason, now)) != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }
    uint64_t version = admindir_next_version(ad);
    if (json) {
        e = keten_cli_json_print(json_pack("{s:s, s:I, s:s, s:I}", "id", id, "serial",
            (json_int_t)serial, "reason", reason, "version", (json_int_t)version));
    } else {
        printf("revoked %s (serial %llu): takes effect when version %llu is published and "
               "signed\n",
            id, (unsigned long long)serial, (unsigned long long)version);
    }
    if (broker) {
        keten_cli_warn("%s is the network's broker: version %llu cannot be published without "
                       "a broker; approve the broker's new request (keten-broker keygen in a new "
                       "home) before you publish",
            id, (unsigned long long)version);
    }
out:
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
