/*
 * keten-keys admin-keygen --out FILE [--name NAME]: one administrator's key,
 * made on that administrator's own machine, always protected by a passphrase
 * that passes the strength rule (passphrase.h).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adminkey.h"
#include "cli.h"
#include "cmd.h"
#include "passphrase.h"

#define CMD "admin-keygen"

static const char usage_text[]
    = "Usage: keten-keys admin-keygen --out FILE [--name NAME] [--passphrase-file F]\n"
      "                               [--json]\n"
      "\n"
      "Make one administrator's signing key. Run it on the administrator's own\n"
      "machine: the secret key never leaves it. Writes FILE (the secret key,\n"
      "mode 0600, always protected by a passphrase) and FILE.pub (the public\n"
      "key, one line of base64 followed by the name, to give to the other\n"
      "administrators for keten-keys init). Prints the public key and its\n"
      "fingerprint: read them aloud when the keys are compared.\n"
      "\n"
      "The passphrase needs at least 5 words or at least 20 characters (a\n"
      "sentence of five or more words is easiest). On a terminal it is asked\n"
      "twice; a mismatch or a passphrase that is too weak is asked again, up to\n"
      "3 times.\n"
      "\n"
      "Options:\n"
      "  --out FILE             where to write the secret key (must not exist)\n"
      "  --name NAME            the administrator's name, e.g. \"J. de Vries\" (up to\n"
      "                         64 bytes); written into FILE.pub, so that the other\n"
      "                         administrators see who signed\n"
      "  --passphrase-file F    read the passphrase from F (mode 0600) instead of\n"
      "                         KETEN_PASSPHRASE or the terminal\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 || errno != ENOENT;
}

int cmd_admin_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        { "out", required_argument, NULL, 'o' },
        { "name", required_argument, NULL, 'n' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *passfile = NULL, *name = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'p':
            passfile = optarg;
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
    if (out == NULL || out[0] == '\0') {
        return keten_cli_usage(CMD, "--out FILE is required");
    }
    if (name != NULL && !adminkey_name_valid(name)) {
        return keten_cli_usage(CMD,
            "--name '%s' is not usable: give 1 to %d bytes of printable text (UTF-8), without "
            "a space at either end",
            name, ADMINKEY_NAME_MAX);
    }

    char pub_path[PATH_MAX];
    int n = snprintf(pub_path, sizeof pub_path, "%s.pub", out);
    if (n < 0 || (size_t)n >= sizeof pub_path) {
        return keten_cli_usage(CMD, "--out %s is too long", out);
    }
    if (exists(out) || exists(pub_path)) {
        return keten_cli_error(keten_err_set(KETEN_ERR_EXISTS,
            "%s already exists; an administrator key is never overwritten: choose another --out",
            exists(out) ? out : pub_path));
    }

    keten_err e;
    char *pass = NULL;
    size_t passlen = 0;
    keten_identity *id = NULL;
    bool wrote_secret = false;
    char prompt[PATH_MAX + 32];
    snprintf(prompt, sizeof prompt, "New passphrase for %s: ", out);
    e = keten_passphrase_get_new(passfile, prompt, true, &pass, &passlen);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = adminkey_generate(&id)) != KETEN_OK) {
        goto out;
    }
    if ((e = keten_identity_save(id, out, (const uint8_t *)pass, passlen)) != KETEN_OK) {
        goto out;
    }
    wrote_secret = true;
    if ((e = adminkey_pub_write(pub_path, id->sign_pk, name)) != KETEN_OK) {
        goto out;
    }
    wrote_secret = false; /* done: keep it */

    char b64[KETEN_CLI_KEY_B64_BYTES], fpr[ADMINKEY_FPR_BYTES];
    keten_cli_key_b64(id->sign_pk, b64);
    adminkey_fingerprint(id->sign_pk, fpr);
    if (json) {
        e = keten_cli_json_print(json_pack("{s:s, s:s, s:s, s:s, s:s?}", "secret", out,
            "public_file", pub_path, "public_key", b64, "fingerprint", fpr, "name", name));
    } else {
        printf("wrote %s (your secret administrator key: keep it offline, with its "
               "passphrase)\n",
            out);
        printf("wrote %s (give it to the other administrators for keten-keys init)\n", pub_path);
        if (name != NULL) {
            printf("name:        %s\n", name);
        }
        printf("public key:  %s\n", b64);
        printf("fingerprint: %s\n", fpr);
    }
out:
    if (wrote_secret) {
        unlink(out);
    }
    keten_passphrase_free(&pass);
    keten_identity_destroy(&id);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
