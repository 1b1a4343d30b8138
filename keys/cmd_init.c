/*
 * keten-keys init: create a network's ADMIN folder, its trust anchor
 * network.pub and the draft of directory version 1.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admindir.h"
#include "adminkey.h"
#include "adminnames.h"
#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "passphrase.h"
#include "pb.h"
#include "util.h"

#define CMD "init"

static const char usage_text[]
    = "Usage: keten-keys init --dir ADMIN --network NAME --threshold K\n"
      "                       (--admin-pub FILE... | --admins N)\n"
      "                       [--no-passphrase] [--passphrase-file F] [--json]\n"
      "\n"
      "Create a network: the folder ADMIN (it must not exist) with the trust\n"
      "anchor ADMIN/network.pub (network name, administrators' public keys,\n"
      "threshold) and ADMIN/state, the draft of directory version 1. Give\n"
      "network.pub to every node and the broker out of band, and compare its\n"
      "sha256 (printed here) with them by another channel. The administrators'\n"
      "names (from the .pub files) are kept in ADMIN/names, for this folder only:\n"
      "network.pub and the directory carry the keys alone.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder to create\n"
      "  --network NAME         the network's name ([a-z0-9-], at most 32)\n"
      "  --threshold K          signatures needed on every directory version\n"
      "                         (1..N; a real network uses 2 of 3: four eyes)\n"
      "  --admin-pub FILE       an administrator's public key, from admin-keygen;\n"
      "                         repeat it, or give a comma-separated list. The\n"
      "                         name in it is kept in ADMIN/names\n"
      "  --admins N             tests and demos: generate N administrator keys\n"
      "                         into ADMIN/admin-1.secret .. admin-N.secret (one\n"
      "                         passphrase for all of them: at least 5 words or\n"
      "                         20 characters)\n"
      "  --no-passphrase        with --admins: leave those keys unencrypted\n"
      "                         (tests and demos only)\n"
      "  --passphrase-file F    with --admins: read their passphrase from F\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static const char *const created_names[] = { ADMINDIR_ANCHOR, ADMINDIR_STATE, ADMINNAMES_FILE };

/* Remove what a failed init created; ADMIN did not exist before. */
static void undo(const char *dir, size_t n_keys)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof created_names / sizeof created_names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, created_names[i]);
        unlink(path);
    }
    for (size_t i = 1; i <= n_keys; i++) {
        snprintf(path, sizeof path, "%s/admin-%zu.secret", dir, i);
        unlink(path);
        snprintf(path, sizeof path, "%s/admin-%zu.pub", dir, i);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s", dir, ADMINDIR_PUBLISHED);
    rmdir(path);
    rmdir(dir);
}

/* --dir exists: say what to do, naming an unfinished init's folder. */
static keten_err dir_exists(const char *dir)
{
    if (admindir_unfinished_init(dir)) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "ADMIN directory %s already exists without %s: an earlier init was stopped before it "
            "finished; remove the unfinished folder (rm -r %s) and run init again, or choose "
            "another --dir",
            dir, ADMINDIR_ANCHOR, dir);
    }
    return keten_err_set(
        KETEN_ERR_EXISTS, "ADMIN directory %s already exists; choose another --dir", dir);
}

static keten_err make_anchor(
    const char *network, const adminkey_set *set, uint8_t **out, size_t *out_len)
{
    ProtobufCBinaryData keys[KETEN_MAX_ADMINS];
    for (size_t i = 0; i < set->n; i++) {
        keys[i].len = KETEN_SIGN_PK_BYTES;
        keys[i].data = (uint8_t *)set->keys[i];
    }
    Keten__Anchor anchor = KETEN__ANCHOR__INIT;
    anchor.network = (char *)network;
    anchor.n_admins = set->n;
    anchor.admins = keys;
    anchor.threshold = set->threshold;
    keten_err e = keten_pb_pack(&anchor.base, out, out_len);
    if (e != KETEN_OK) {
        return e;
    }
    /* Check what we wrote the way every node will read it. */
    Keten__Anchor *check = NULL;
    e = keten_directory_anchor_parse(*out, *out_len, &check);
    keten_pb_free((ProtobufCMessage **)(void *)&check);
    if (e != KETEN_OK) {
        free(*out);
        *out = NULL;
    }
    return e;
}

static keten_err write_in(
    const char *dir, const char *name, const void *data, size_t len, unsigned mode)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        return keten_err_set(KETEN_ERR_INVALID, "path %s/%s is too long", dir, name);
    }
    return keten_file_write(path, data, len, mode, true);
}

static json_t *result_json(const char *dir, const char *network, const adminkey_set *set,
    adminkey_name *names, const char *anchor_hash, size_t n_generated, bool no_passphrase)
{
    json_t *admins = json_array(), *described = json_array();
    for (size_t i = 0; admins != NULL && described != NULL && i < set->n; i++) {
        char b64[KETEN_CLI_KEY_B64_BYTES], fpr[ADMINKEY_FPR_BYTES];
        keten_cli_key_b64(set->keys[i], b64);
        adminkey_fingerprint(set->keys[i], fpr);
        json_array_append_new(admins, json_string(b64));
        json_array_append_new(described,
            json_pack("{s:s, s:s, s:s?}", "key", b64, "fingerprint", fpr, "name",
                names[i][0] != '\0' ? names[i] : NULL));
    }
    return json_pack("{s:s, s:s, s:s+, s:s, s:I, s:o, s:o, s:I, s:b}", "dir", dir, "network",
        network, "anchor", dir, "/" ADMINDIR_ANCHOR, "anchor_sha256", anchor_hash, "threshold",
        (json_int_t)set->threshold, "admins", admins, "administrators", described, "generated_keys",
        (json_int_t)n_generated, "passphrase_protected", n_generated > 0 && !no_passphrase);
}

/* ADMIN/names from the names the keys came with. */
static keten_err make_names(const adminkey_set *set, adminkey_name *names, adminnames **out)
{
    keten_err e = adminnames_new(out);
    for (size_t i = 0; e == KETEN_OK && i < set->n; i++) {
        if (names[i][0] != '\0') {
            e = adminnames_set(*out, set->keys[i], names[i]);
        }
    }
    return e;
}

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "network", required_argument, NULL, 'n' },
        { "threshold", required_argument, NULL, 't' },
        { "admin-pub", required_argument, NULL, 'a' },
        { "admins", required_argument, NULL, 'N' },
        { "no-passphrase", no_argument, NULL, 'P' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL, *network = NULL, *threshold_arg = NULL, *admins_arg = NULL;
    const char *passfile = NULL;
    char *pubs[KETEN_MAX_ADMINS];
    size_t n_pubs = 0;
    bool no_passphrase = false, json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            network = optarg;
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
        case 'N':
            admins_arg = optarg;
            break;
        case 'P':
            no_passphrase = true;
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
    if (dir == NULL || dir[0] == '\0') {
        return keten_cli_usage(CMD, "--dir ADMIN is required");
    }
    if (network == NULL) {
        return keten_cli_usage(CMD, "--network NAME is required");
    }
    if (!keten_name_valid(network)) {
        return keten_cli_usage(CMD,
            "--network '%s' is not a valid name: use 1 to %d of a-z, 0-9 and '-'", network,
            KETEN_NAME_MAX);
    }
    if (threshold_arg == NULL) {
        return keten_cli_usage(CMD, "--threshold K is required");
    }
    if ((n_pubs > 0) == (admins_arg != NULL)) {
        return keten_cli_usage(
            CMD, "give either --admin-pub FILE... (a real network) or --admins N (tests, demo)");
    }
    if (admins_arg == NULL && (no_passphrase || passfile != NULL)) {
        return keten_cli_usage(
            CMD, "--no-passphrase and --passphrase-file only apply to keys made with --admins N");
    }
    if (no_passphrase && passfile != NULL) {
        return keten_cli_usage(CMD, "--no-passphrase and --passphrase-file exclude each other");
    }
    uint64_t threshold = 0, n_generate = 0;
    if (!keten_cli_parse_uint(threshold_arg, 0, UINT32_MAX, &threshold)) {
        return keten_cli_usage(CMD, "--threshold '%s' is not a number", threshold_arg);
    }
    if (admins_arg != NULL && !keten_cli_parse_uint(admins_arg, 1, KETEN_MAX_ADMINS, &n_generate)) {
        return keten_cli_usage(
            CMD, "--admins '%s' must be a number from 1 to %d", admins_arg, KETEN_MAX_ADMINS);
    }

    keten_err e = KETEN_OK;
    adminkey_set set;
    memset(&set, 0, sizeof set);
    adminkey_name names[KETEN_MAX_ADMINS];
    memset(names, 0, sizeof names);
    adminnames *names_file = NULL;
    keten_identity *keys[KETEN_MAX_ADMINS] = { NULL };
    char *pass = NULL;
    size_t passlen = 0;
    keten_dirbuild *draft = NULL;
    uint8_t *state = NULL, *anchor = NULL;
    size_t state_len = 0, anchor_len = 0;
    bool created = false;
    int rc = KETEN_EXIT_OK;

    /* 1. Everything that can be refused is refused before anything is made. */
    if (n_pubs > 0) {
        e = adminkey_pub_read_list(pubs, n_pubs, &set, names);
        if (e != KETEN_OK) {
            goto out;
        }
    } else {
        set.n = (size_t)n_generate;
    }
    if (threshold < 1 || threshold > set.n) {
        rc = keten_cli_usage(CMD,
            "--threshold %llu is outside 1..%zu (the number of administrators); a real network "
            "uses 2 of 3",
            (unsigned long long)threshold, set.n);
        goto out;
    }
    set.threshold = (uint32_t)threshold;
    struct stat st;
    if (lstat(dir, &st) == 0 || errno != ENOENT) {
        e = dir_exists(dir);
        goto out;
    }

    /* 2. Keys, anchor and draft, in memory. */
    if (n_generate > 0) {
        if (!no_passphrase) {
            char what[PATH_MAX];
            snprintf(
                what, sizeof what, "%s/admin-1..%llu.secret", dir, (unsigned long long)n_generate);
            char prompt[PATH_MAX + 32];
            snprintf(prompt, sizeof prompt, "New passphrase for %s: ", what);
            e = keten_passphrase_get_new(passfile, prompt, true, &pass, &passlen);
            if (e != KETEN_OK) {
                goto out;
            }
        }
        for (size_t i = 0; i < set.n; i++) {
            if ((e = adminkey_generate(&keys[i])) != KETEN_OK) {
                goto out;
            }
            memcpy(set.keys[i], keys[i]->sign_pk, KETEN_SIGN_PK_BYTES);
            snprintf(names[i], sizeof names[i], "test administrator %zu", i + 1);
        }
    }
    e = keten_dirbuild_new(
        network, (const uint8_t(*)[KETEN_SIGN_PK_BYTES])set.keys, set.n, set.threshold, &draft);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = keten_dirbuild_save(draft, &state, &state_len)) != KETEN_OK) {
        goto out;
    }
    if ((e = make_anchor(network, &set, &anchor, &anchor_len)) != KETEN_OK) {
        goto out;
    }
    if ((e = make_names(&set, names, &names_file)) != KETEN_OK) {
        goto out;
    }

    /* 3. The folder and its files; on failure all of it is removed again. */
    if (mkdir(dir, 0700) != 0) {
        if (errno == EEXIST) {
            e = dir_exists(dir);
        } else {
            e = keten_err_set(
                KETEN_ERR_IO, "cannot create ADMIN directory %s: %s", dir, strerror(errno));
        }
        goto out;
    }
    created = true;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, ADMINDIR_PUBLISHED);
    if (mkdir(path, 0700) != 0) {
        e = keten_err_set(KETEN_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < (size_t)n_generate; i++) {
        int n = snprintf(path, sizeof path, "%s/admin-%zu.secret", dir, i + 1);
        if (n < 0 || (size_t)n >= sizeof path) {
            e = keten_err_set(KETEN_ERR_INVALID, "--dir %s is too long", dir);
            goto out;
        }
        e = keten_identity_save(keys[i], path, (const uint8_t *)pass, pass != NULL ? passlen : 0);
        if (e != KETEN_OK) {
            goto out;
        }
        snprintf(path, sizeof path, "%s/admin-%zu.pub", dir, i + 1);
        if ((e = adminkey_pub_write(path, keys[i]->sign_pk, names[i])) != KETEN_OK) {
            goto out;
        }
    }
    if ((e = write_in(dir, ADMINDIR_STATE, state, state_len, 0600)) != KETEN_OK) {
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, ADMINNAMES_FILE);
    if ((e = adminnames_save(names_file, path)) != KETEN_OK) {
        goto out;
    }
    if ((e = write_in(dir, ADMINDIR_ANCHOR, anchor, anchor_len, 0644)) != KETEN_OK) {
        goto out;
    }

    created = false; /* complete: nothing to undo from here on */

    /* 4. Report. */
    for (size_t i = 0; i < set.n; i++) {
        if (names[i][0] == '\0') {
            char fpr[ADMINKEY_FPR_BYTES];
            adminkey_fingerprint(set.keys[i], fpr);
            keten_cli_warn("the public key of administrator %zu (fingerprint %s) carries no name: "
                           "outputs show its fingerprint only (admin-keygen --name sets one)",
                i + 1, fpr);
        }
    }
    if (n_generate > 0 && no_passphrase) {
        keten_cli_warn("%s/admin-*.secret are not protected by a passphrase (--no-passphrase); "
                       "such administrator keys are for tests and demos only",
            dir);
    }
    char hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(anchor, anchor_len, hash);
    if (json) {
        e = keten_cli_json_print(
            result_json(dir, network, &set, names, hash, (size_t)n_generate, no_passphrase));
    } else {
        printf("created %s for network '%s': %u of %zu administrator signatures needed\n", dir,
            network, (unsigned)set.threshold, set.n);
        printf("anchor %s/%s sha256 %s\n", dir, ADMINDIR_ANCHOR, hash);
        for (size_t i = 0; i < set.n; i++) {
            char label[ADMINNAMES_LABEL_BYTES], b64[KETEN_CLI_KEY_B64_BYTES];
            adminnames_label(names_file, set.keys[i], label);
            keten_cli_key_b64(set.keys[i], b64);
            if (n_generate > 0) {
                printf("administrator %zu: %s, key %s (%s/admin-%zu.secret)\n", i + 1, label, b64,
                    dir, i + 1);
            } else if (names[i][0] != '\0') {
                printf("administrator %zu: %s, key %s\n", i + 1, label, b64);
            } else {
                printf("administrator %zu: %s\n", i + 1, label);
            }
        }
        printf("Next: register categories and purposes, approve requests, add policy rules,\n"
               "then publish. Give network.pub to every partner and compare its sha256 by\n"
               "another channel.\n");
    }
out:
    if (e != KETEN_OK && created) {
        undo(dir, (size_t)n_generate);
    }
    for (size_t i = 0; i < KETEN_MAX_ADMINS; i++) {
        keten_identity_destroy(&keys[i]);
    }
    keten_passphrase_free(&pass);
    keten_dirbuild_destroy(&draft);
    adminnames_destroy(&names_file);
    free(state);
    free(anchor);
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    return rc;
}
