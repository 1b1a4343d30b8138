/*
 * keten-keys publish and sign: turn the draft into the next signed directory
 * version, and collect the further administrator signatures it needs
 * (k distinct administrators of the previous version; on a change of
 * administrators also k' of the new set).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
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
#include "dirsig.h"
#include "pb.h"
#include "render.h"
#include "util.h"

#define DIR_VALID_DAYS_MAX 365

static const char publish_usage[]
    = "Usage: keten-keys publish --dir ADMIN --out FILE (--key FILE | --admin I)\n"
      "                          [--valid-days D] [--refresh] [--force]\n"
      "                          [--passphrase-file F] [--json]\n"
      "\n"
      "Produce the next directory version from the draft in ADMIN, signed by one\n"
      "administrator, and write it to FILE (a copy stays in ADMIN/published/).\n"
      "It is valid for nodes and the broker once it carries the threshold of\n"
      "signatures: the other administrators add theirs with keten-keys sign.\n"
      "The signer must be an administrator of the previous version (of the anchor\n"
      "for version 1) or, when this version changes the administrators, of the\n"
      "new set. FILE may replace an earlier directory file, nothing else.\n"
      "\n"
      "Refused while the last published version lacks signatures (have another\n"
      "administrator sign it first: publishing over it wastes it), and when the\n"
      "draft is the same as the last published version (nothing to publish;\n"
      "keten-keys status shows what would change).\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --out FILE             where to write the signed directory\n"
      "  --key FILE             sign with this administrator key file\n"
      "  --admin I              tests and demos: sign with ADMIN/admin-I.secret\n"
      "  --valid-days D         days until the version expires (default 14, at most 365);\n"
      "                         past expiry nodes and the broker stop until a fresh\n"
      "                         version comes\n"
      "  --refresh              publish the same contents again as a new version,\n"
      "                         only to renew the expiry (the routine before the\n"
      "                         last version expires); refused when the draft has\n"
      "                         changes\n"
      "  --force                publish although the last published version lacks\n"
      "                         signatures (it is then never valid) or nothing changed\n"
      "  --passphrase-file F    read the key's passphrase from F (mode 0600)\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

static const char sign_usage[]
    = "Usage: keten-keys sign --dir ADMIN FILE (--key FILE | --admin I)\n"
      "                       [--passphrase-file F] [--json]\n"
      "\n"
      "Add an administrator's signature to FILE, the directory version last\n"
      "published from ADMIN (FILE may be the copy the publishing administrator\n"
      "sent you). Refuses a version that is not the latest one published from\n"
      "ADMIN, a document whose contents differ from it, a key that is not an\n"
      "administrator's, and a second signature by the same key. Rewrites FILE and\n"
      "the copy in ADMIN/published/, then says whether the version is now valid.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --key FILE             sign with this administrator key file\n"
      "  --admin I              tests and demos: sign with ADMIN/admin-I.secret\n"
      "  --passphrase-file F    read the key's passphrase from F (mode 0600)\n"
      "  --json                 print the result as JSON\n"
      "  --help                 show this help\n";

typedef struct sign_args {
    const char *dir, *out, *key, *admin_arg, *days_arg, *passfile;
    uint64_t admin;
    bool json, force, refresh;
} sign_args;

static int parse_args(
    const char *cmd, const char *usage_text, bool publish, int argc, char **argv, sign_args *a)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "out", required_argument, NULL, 'o' },
        { "key", required_argument, NULL, 'k' },
        { "admin", required_argument, NULL, 'a' },
        { "valid-days", required_argument, NULL, 'v' },
        { "force", no_argument, NULL, 'F' },
        { "refresh", no_argument, NULL, 'R' },
        { "passphrase-file", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            a->dir = optarg;
            break;
        case 'o':
            if (!publish) {
                return keten_cli_usage(cmd, "--out is for publish; sign rewrites FILE itself");
            }
            a->out = optarg;
            break;
        case 'k':
            a->key = optarg;
            break;
        case 'a':
            a->admin_arg = optarg;
            break;
        case 'v':
            if (!publish) {
                return keten_cli_usage(cmd, "--valid-days is for publish");
            }
            a->days_arg = optarg;
            break;
        case 'F':
        case 'R':
            if (!publish) {
                return keten_cli_usage(
                    cmd, "%s is for publish", c == 'F' ? "--force" : "--refresh");
            }
            *(c == 'F' ? &a->force : &a->refresh) = true;
            break;
        case 'p':
            a->passfile = optarg;
            break;
        case 'j':
            a->json = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return -1;
        default:
            return keten_cli_getopt_error(cmd, c, argc, argv);
        }
    }
    if (a->dir == NULL) {
        return keten_cli_usage(cmd, "--dir ADMIN is required");
    }
    if ((a->key != NULL) == (a->admin_arg != NULL)) {
        return keten_cli_usage(cmd,
            "give either --key FILE (your administrator key) or "
            "--admin I (a key made by init --admins N)");
    }
    if (a->admin_arg != NULL
        && !keten_cli_parse_uint(a->admin_arg, 1, KETEN_MAX_ADMINS, &a->admin)) {
        return keten_cli_usage(
            cmd, "--admin '%s' must be a number from 1 to %d", a->admin_arg, KETEN_MAX_ADMINS);
    }
    return KETEN_EXIT_OK;
}

/* The signer must be an administrator who counts for this version. */
static keten_err check_signer(const keten_identity *id, const char *keyname,
    const adminkey_set *signing, const adminkey_set *next, uint64_t version)
{
    bool change = !adminkey_set_equal(signing, next);
    if (adminkey_set_find(signing, id->sign_pk) >= 0
        || (change && adminkey_set_find(next, id->sign_pk) >= 0)) {
        return KETEN_OK;
    }
    if (strcmp(id->role, ADMINKEY_ROLE) != 0) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s is the key of node %s (role %s), not an administrator's key; sign with an "
            "administrator key",
            keyname, id->id, id->role);
    }
    char b64[KETEN_CLI_KEY_B64_BYTES];
    keten_cli_key_b64(id->sign_pk, b64);
    if (version == 1) {
        return keten_err_set(KETEN_ERR_INVALID,
            "%s (%s) is not an administrator of this network (not in network.pub%s); its "
            "signature would not count",
            keyname, b64, change ? " nor in the new set" : "");
    }
    return keten_err_set(KETEN_ERR_INVALID,
        "%s (%s) is not an administrator of version %llu%s; its signature would not count", keyname,
        b64, (unsigned long long)(version - 1), change ? " nor of the new set" : "");
}

static keten_err set_of(const Keten__Directory *doc, adminkey_set *out)
{
    return adminkey_set_from_pb(doc->admins, doc->n_admins, doc->threshold, out);
}

/* "valid" or why not, for the version in sd_bytes; *valid tells. */
static keten_err judge(const admindir *ad, const adminkey_set *signing, const uint8_t *buf,
    size_t len, const dirsig_tally *t, bool *valid)
{
    keten_err e = dirsig_verify_with_set(
        keten_dirbuild_doc(ad->draft)->network, signing, buf, len, keten_now_ms());
    *valid = e == KETEN_OK;
    if (e == KETEN_OK || (e == KETEN_ERR_THRESHOLD && !t->enough)) {
        return KETEN_OK;
    }
    if (e == KETEN_ERR_EXPIRED) {
        return keten_err_set(e,
            "version %llu has expired: more signatures cannot make it valid; publish a fresh "
            "version",
            (unsigned long long)admindir_latest_version(ad));
    }
    /* Anything else means the document itself is wrong: refuse to write it. */
    return e;
}

/* "J. de Vries (fingerprint ...)" for the signer, from ADMIN/names. */
static void signer_label(
    const admindir *ad, const keten_identity *id, char out[static ADMINNAMES_LABEL_BYTES])
{
    adminnames *names = NULL;
    if (admindir_load_names(ad, &names) != KETEN_OK) {
        keten_err_clear(); /* a label only: the key is what counts */
    }
    adminnames_label(names, id->sign_pk, out);
    adminnames_destroy(&names);
}

/* The signer as {"key", "fingerprint", "name"}. */
static json_t *signer_json(const admindir *ad, const keten_identity *id)
{
    adminnames *names = NULL;
    if (admindir_load_names(ad, &names) != KETEN_OK) {
        keten_err_clear();
    }
    ProtobufCBinaryData key = { KETEN_SIGN_PK_BYTES, (uint8_t *)id->sign_pk };
    json_t *obj = render_admin_json(names, &key);
    adminnames_destroy(&names);
    return obj;
}

/* Whether a node or broker with an empty store takes this version as the
 * file of its first start: it is checked against the anchor alone, so a
 * version signed after an administrator change by too few of the anchor's
 * administrators is refused there (it verifies only along the chain). */
static bool starts_from_anchor(const admindir *ad, const uint8_t *buf, size_t len)
{
    keten_directory *d = NULL;
    const uint8_t *b = buf;
    size_t l = len;
    bool ok = keten_directory_verify_chain(ad->anchor, NULL, &b, &l, 1, 0, &d) == KETEN_OK;
    keten_directory_destroy(&d);
    keten_err_clear();
    return ok;
}

static void print_status(const dirsig_tally *t, bool valid, bool from_anchor)
{
    char text[512];
    dirsig_tally_text(t, text, sizeof text);
    printf("%s\n", text);
    if (valid) {
        printf("valid: nodes and the broker will accept it\n");
        if (!from_anchor) {
            printf("a new node cannot start from this version (too few of its signers are "
                   "administrators in network.pub): give new partners the first version, or the "
                   "one that changed the administrators; they fetch this one from the broker\n");
        }
    } else {
        printf("not yet valid for nodes and the broker\n");
    }
}

/* --out must not lie in ADMIN: publish keeps its own copies there, and an
 * earlier version's copy must never be overwritten. */
static keten_err check_out_outside(const admindir *ad, const char *out)
{
    char copy[PATH_MAX], out_dir[PATH_MAX], admin_real[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", out);
    if (realpath(dirname(copy), out_dir) == NULL) {
        return keten_err_set(
            KETEN_ERR_NOT_FOUND, "the folder of --out %s does not exist: %s", out, strerror(errno));
    }
    if (realpath(ad->path, admin_real) == NULL) {
        return keten_err_set(KETEN_ERR_IO, "cannot resolve %s: %s", ad->path, strerror(errno));
    }
    size_t n = strlen(admin_real);
    if (strncmp(out_dir, admin_real, n) == 0 && (out_dir[n] == '\0' || out_dir[n] == '/')) {
        return keten_err_set(KETEN_ERR_INVALID,
            "--out %s lies inside %s; write the directory file elsewhere (publish keeps its own "
            "copy in %s/%s)",
            out, ad->path, ad->path, ADMINDIR_PUBLISHED);
    }
    return KETEN_OK;
}

/* An existing --out may be replaced only when it is a directory file. */
static keten_err check_out(const char *out)
{
    struct stat st;
    if (lstat(out, &st) != 0) {
        return errno == ENOENT
            ? KETEN_OK
            : keten_err_set(KETEN_ERR_IO, "cannot check --out %s: %s", out, strerror(errno));
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    keten_err e = S_ISREG(st.st_mode) ? keten_file_read(out, KETEN_DIRECTORY_MAX, &buf, &len)
                                      : KETEN_ERR_IO;
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, out, &sd);
    }
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, out, &doc);
    }
    if (e == KETEN_OK && (doc->version == 0 || doc->network[0] == '\0')) {
        e = KETEN_ERR_MALFORMED;
    }
    free(buf);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    if (e != KETEN_OK) {
        return keten_err_set(KETEN_ERR_EXISTS,
            "--out %s exists and is not a directory file; choose another --out", out);
    }
    return KETEN_OK;
}

/* Warn when the version before has fewer signatures than it needs. */
static void warn_incomplete_previous(const admindir *ad, uint64_t version)
{
    if (version < 2) {
        return;
    }
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    adminkey_set signing, own;
    dirsig_tally t;
    if (admindir_read_published(ad, version - 1, NULL, NULL, &sd, &doc) == KETEN_OK
        && admindir_signing_set(ad, version - 1, &signing) == KETEN_OK
        && set_of(doc, &own) == KETEN_OK && dirsig_count(sd, &signing, &own, &t) == KETEN_OK
        && !t.enough) {
        char text[512];
        dirsig_tally_text(&t, text, sizeof text);
        keten_cli_warn("the previous version %llu is incomplete (%s); nodes will skip it",
            (unsigned long long)(version - 1), text);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
}

/* The last published version must have its signatures, and the draft must
 * change something, unless --force (or, for an unchanged draft, --refresh).
 * Returns 0 or the exit code, having said why and what to do. */
static const Keten__NodeCert *broker_of(const Keten__Directory *doc)
{
    for (size_t i = 0; doc != NULL && i < doc->n_nodes; i++) {
        if (strcmp(doc->nodes[i]->role, "broker") == 0) {
            return doc->nodes[i];
        }
    }
    return NULL;
}

static int check_previous(const admindir *ad, const sign_args *a, uint64_t now)
{
    admindir_published p;
    keten_dirbuild_changes *d = NULL;
    keten_err e = admindir_last_published(ad, now, &p);
    if (e == KETEN_OK && p.version > 0) {
        e = keten_dirbuild_diff(p.doc, keten_dirbuild_doc(ad->draft), &d);
    }
    if (e != KETEN_OK) {
        return keten_cli_error(e);
    }
    int rc = KETEN_EXIT_OK;
    char tally[512];
    dirsig_tally_text(&p.tally, tally, sizeof tally);
    char *hint = strstr(tally, " (keten-keys sign)");
    if (hint != NULL) {
        *hint = '\0'; /* the message below says how */
    }
    const Keten__NodeCert *had_broker = p.version > 0 ? broker_of(p.doc) : NULL;
    if (had_broker != NULL && broker_of(keten_dirbuild_doc(ad->draft)) == NULL) {
        /* The broker refuses to install a version without its keys, so it
         * could never hand this one on, and no node starts from it. */
        e = keten_err_set(KETEN_ERR_INVALID,
            "version %llu would have no broker: the draft revokes %s (serial %llu) and approves no "
            "other broker. The broker refuses to install a version without its own keys and no "
            "node can use one, so the network would stop. Approve the broker's new request in "
            "this draft first (keten-keys approve --dir %s REQUEST, the request made by "
            "keten-broker keygen in a new home), then publish",
            (unsigned long long)(p.version + 1), had_broker->id,
            (unsigned long long)had_broker->serial, ad->path);
        rc = keten_cli_error(e);
    } else if (p.version > 0 && !p.tally.enough && !a->force) {
        if (p.expired) {
            keten_err_set(KETEN_ERR_THRESHOLD,
                "version %llu expired before it had its signatures (%s): signing it can no "
                "longer make it valid; to publish version %llu in its place, run publish again "
                "with --force",
                (unsigned long long)p.version, tally, (unsigned long long)(p.version + 1));
        } else {
            keten_err_set(KETEN_ERR_THRESHOLD,
                "version %llu has %s: run keten-keys sign --dir %s %s with another "
                "administrator's key first. Publishing now would leave version %llu never valid; "
                "to do that all the same, add --force",
                (unsigned long long)p.version, tally, ad->path, p.file,
                (unsigned long long)p.version);
        }
        /* Nothing was verified: a refusal to act, exit 1. */
        keten_cli_error(KETEN_ERR_THRESHOLD);
        rc = KETEN_EXIT_FAILURE;
    } else if (d != NULL && !d->changed && !a->refresh && !a->force) {
        char expires[32];
        keten_time_iso(p.doc->expires_at, expires, sizeof expires);
        e = keten_err_set(KETEN_ERR_EXISTS,
            "nothing changed since version %llu (it %s %s): the draft holds the same partners, "
            "rules and values. To publish the same contents as version %llu only to renew the "
            "expiry, run publish again with --refresh",
            (unsigned long long)p.version, p.expired ? "expired" : "expires", expires,
            (unsigned long long)(p.version + 1));
        rc = keten_cli_error(e);
    } else if (d != NULL && d->changed && a->refresh && !a->force) {
        e = keten_err_set(KETEN_ERR_INVALID,
            "--refresh publishes an unchanged draft again, but this draft changes things since "
            "version %llu (keten-keys status --dir %s lists them); publish without --refresh "
            "to publish those changes",
            (unsigned long long)p.version, ad->path);
        rc = keten_cli_error(e);
    }
    keten_dirbuild_changes_destroy(&d);
    admindir_published_free(&p);
    return rc;
}

int cmd_publish(int argc, char **argv)
{
    sign_args a = { 0 };
    int rc = parse_args("publish", publish_usage, true, argc, argv, &a);
    if (rc != KETEN_EXIT_OK) {
        return rc < 0 ? KETEN_EXIT_OK : rc;
    }
    if (optind < argc) {
        return keten_cli_usage("publish", "unexpected argument '%s'", argv[optind]);
    }
    if (a.out == NULL || a.out[0] == '\0') {
        return keten_cli_usage("publish", "--out FILE is required");
    }
    uint64_t days = KETEN_DIRECTORY_VALID_DAYS_DEFAULT;
    if (a.days_arg != NULL && !keten_cli_parse_uint(a.days_arg, 1, DIR_VALID_DAYS_MAX, &days)) {
        return keten_cli_usage("publish", "--valid-days '%s' must be a number from 1 to %d",
            a.days_arg, DIR_VALID_DAYS_MAX);
    }

    admindir *ad = NULL;
    keten_identity *id = NULL;
    uint8_t *dir_bytes = NULL, *sd_bytes = NULL;
    size_t dir_len = 0, sd_len = 0;
    Keten__SignedDirectory *sd = NULL;
    adminkey_set signing, next;
    dirsig_tally t;
    bool valid = false, wrote_copy = false;
    char copy[PATH_MAX];
    uint64_t now = keten_now_ms();
    keten_err e = admindir_open(a.dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    uint64_t version = admindir_next_version(ad);
    if ((e = admindir_signing_set(ad, version, &signing)) != KETEN_OK
        || (e = set_of(keten_dirbuild_doc(ad->draft), &next)) != KETEN_OK
        || (e = admindir_published_file(ad, version, copy)) != KETEN_OK
        || (e = check_out_outside(ad, a.out)) != KETEN_OK || (e = check_out(a.out)) != KETEN_OK) {
        goto out;
    }
    if ((rc = check_previous(ad, &a, now)) != KETEN_EXIT_OK) {
        admindir_close(&ad);
        return rc;
    }
    if ((e = admindir_open_signer(ad, a.key, a.admin, a.passfile, &id)) != KETEN_OK) {
        goto out;
    }
    const char *keyname = a.key != NULL ? a.key : a.admin_arg;
    if ((e = check_signer(id, keyname, &signing, &next, version)) != KETEN_OK) {
        goto out;
    }
    warn_incomplete_previous(ad, version);
    e = keten_dirbuild_finish(ad->draft, now, days * KETEN_MS_PER_DAY, &dir_bytes, &dir_len);
    if (e != KETEN_OK) {
        goto out;
    }
    e = keten_directory_sign(dir_bytes, dir_len, NULL, 0, id->sign_sk, &sd_bytes, &sd_len);
    if (e != KETEN_OK) {
        goto out;
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_directory, sd_bytes, sd_len, KETEN_DIRECTORY_MAX, "the new directory", &sd);
    if (e != KETEN_OK || (e = dirsig_count(sd, &signing, &next, &t)) != KETEN_OK
        || (e = judge(ad, &signing, sd_bytes, sd_len, &t, &valid)) != KETEN_OK) {
        goto out;
    }
    if ((e = keten_dirbuild_advance(ad->draft, dir_bytes, dir_len)) != KETEN_OK) {
        goto out;
    }
    /* Write: the copy in ADMIN, the state, then FILE. Undo the copy if the
     * state cannot be written, so that ADMIN stays as it was. A command
     * stopped between the copy and the state leaves the copy, which the
     * next command takes into the state (admindir_open()); none leaves a
     * version outside ADMIN that ADMIN does not know. */
    if ((e = keten_file_write(copy, sd_bytes, sd_len, 0644, false)) != KETEN_OK) {
        goto out;
    }
    wrote_copy = true;
    if ((e = admindir_save(ad)) != KETEN_OK) {
        goto out;
    }
    wrote_copy = false;
    if ((e = keten_file_write(a.out, sd_bytes, sd_len, 0644, false)) != KETEN_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", keten_err_detail());
        e = keten_err_set(e,
            "version %llu is published and kept in %s, but --out could not be written (%s); "
            "copy %s to where you need it",
            (unsigned long long)version, copy, why, copy);
        goto out;
    }

    char until[32], hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_time_iso(now + days * KETEN_MS_PER_DAY, until, sizeof until);
    keten_cli_sha256_hex(sd_bytes, sd_len, hash);
    if (a.json) {
        e = keten_cli_json_print(json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:b, s:b, s:o}",
            "file", a.out, "copy", copy, "version", (json_int_t)version, "expires_at", until,
            "sha256", hash, "signatures", dirsig_tally_json(&t), "valid", valid,
            "new_node_can_start", starts_from_anchor(ad, sd_bytes, sd_len), "signed_by",
            signer_json(ad, id)));
    } else {
        char label[ADMINNAMES_LABEL_BYTES];
        signer_label(ad, id, label);
        printf("published version %llu of network '%s' to %s (expires %s)\n",
            (unsigned long long)version, keten_dirbuild_doc(ad->draft)->network, a.out, until);
        printf("signed by %s\n", label);
        print_status(&t, valid, starts_from_anchor(ad, sd_bytes, sd_len));
    }
out:
    if (wrote_copy) {
        unlink(copy);
    }
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    free(dir_bytes);
    free(sd_bytes);
    keten_identity_destroy(&id);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}

/* ---- sign -------------------------------------------------------------- */

static bool has_key(Keten__DirectorySignature *const *sigs, size_t n, const uint8_t *pk)
{
    for (size_t i = 0; i < n; i++) {
        if (sigs[i]->admin_pk.len == KETEN_SIGN_PK_BYTES
            && sodium_memcmp(sigs[i]->admin_pk.data, pk, KETEN_SIGN_PK_BYTES) == 0) {
            return true;
        }
    }
    return false;
}

/* The valid signatures by counting administrators from FILE and the copy
 * in ADMIN, each key once; others are dropped (and said so). */
static keten_err merge_signatures(const Keten__SignedDirectory *file_sd,
    const Keten__SignedDirectory *copy_sd, const adminkey_set *signing, const adminkey_set *next,
    Keten__DirectorySignature **kept, size_t *n_kept)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    keten_err e = dirsig_message(&file_sd->directory, &msg, &len);
    if (e != KETEN_OK) {
        return e;
    }
    const Keten__SignedDirectory *sources[2] = { file_sd, copy_sd };
    size_t dropped = 0;
    *n_kept = 0;
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < sources[s]->n_signatures; i++) {
            Keten__DirectorySignature *sig = sources[s]->signatures[i];
            if (sig->admin_pk.len != KETEN_SIGN_PK_BYTES
                || has_key(kept, *n_kept, sig->admin_pk.data)) {
                continue; /* the same signature from the other source, or junk */
            }
            bool admin = adminkey_set_find(signing, sig->admin_pk.data) >= 0
                || adminkey_set_find(next, sig->admin_pk.data) >= 0;
            if (!admin || !dirsig_verifies(msg, len, sig)) {
                dropped += s == 0 ? 1 : 0;
                continue;
            }
            if (*n_kept == 2 * KETEN_MAX_ADMINS) {
                break;
            }
            kept[(*n_kept)++] = sig;
        }
    }
    free(msg);
    if (dropped > 0) {
        keten_cli_warn("dropped %zu signature(s) from the file that are not valid signatures "
                       "of an administrator",
            dropped);
    }
    return KETEN_OK;
}

int cmd_sign(int argc, char **argv)
{
    sign_args a = { 0 };
    int rc = parse_args("sign", sign_usage, false, argc, argv, &a);
    if (rc != KETEN_EXIT_OK) {
        return rc < 0 ? KETEN_EXIT_OK : rc;
    }
    if (optind >= argc) {
        return keten_cli_usage("sign", "give the directory FILE to sign");
    }
    if (argc - optind > 1) {
        return keten_cli_usage("sign", "unexpected argument '%s'", argv[optind + 1]);
    }
    const char *file = argv[optind];

    admindir *ad = NULL;
    keten_identity *id = NULL;
    uint8_t *buf = NULL, *base = NULL, *sd_bytes = NULL;
    size_t len = 0, base_len = 0, sd_len = 0;
    Keten__SignedDirectory *file_sd = NULL, *copy_sd = NULL, *new_sd = NULL;
    Keten__Directory *doc = NULL;
    Keten__DirectorySignature *kept[2 * KETEN_MAX_ADMINS];
    size_t n_kept = 0;
    adminkey_set signing, next;
    dirsig_tally t;
    bool valid = false;
    char copy[PATH_MAX];
    keten_err e = admindir_open(a.dir, &ad);
    if (e != KETEN_OK) {
        goto out;
    }
    if ((e = keten_file_read(file, KETEN_DIRECTORY_MAX, &buf, &len)) != KETEN_OK) {
        goto out;
    }
    if (KETEN_PB_UNPACK_CANONICAL(
            keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, file, &file_sd)
            != KETEN_OK
        || KETEN_PB_UNPACK_CANONICAL(keten__directory, file_sd->directory.data,
               file_sd->directory.len, KETEN_DIRECTORY_MAX, file, &doc)
            != KETEN_OK) {
        e = keten_err_set(KETEN_ERR_MALFORMED,
            "%s is not a directory file (or it was damaged); sign the file made by keten-keys "
            "publish",
            file);
        goto out;
    }
    const char *network = keten_dirbuild_doc(ad->draft)->network;
    if (strcmp(doc->network, network) != 0) {
        e = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "%s is a directory of network '%s', but %s is network '%s'", file, doc->network, a.dir,
            network);
        goto out;
    }
    uint64_t latest = admindir_latest_version(ad);
    if (latest == 0) {
        e = keten_err_set(KETEN_ERR_NOT_FOUND,
            "nothing has been published from %s yet; run keten-keys publish first", a.dir);
        goto out;
    }
    if (doc->version < latest) {
        e = keten_err_set(KETEN_ERR_ROLLBACK,
            "%s is version %llu, but %s has already published version %llu; signing an old "
            "version could help roll the network back: sign version %llu instead",
            file, (unsigned long long)doc->version, a.dir, (unsigned long long)latest,
            (unsigned long long)latest);
        goto out;
    }
    if (doc->version > latest) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "%s is version %llu, but the latest version published from %s is %llu; it was not "
            "published from this ADMIN directory",
            file, (unsigned long long)doc->version, a.dir, (unsigned long long)latest);
        goto out;
    }
    if ((e = admindir_read_published(ad, latest, NULL, NULL, &copy_sd, NULL)) != KETEN_OK
        || (e = admindir_published_file(ad, latest, copy)) != KETEN_OK) {
        goto out;
    }
    if (copy_sd->directory.len != file_sd->directory.len
        || sodium_memcmp(copy_sd->directory.data, file_sd->directory.data, file_sd->directory.len)
            != 0) {
        e = keten_err_set(KETEN_ERR_MISMATCH,
            "%s is not the document published from %s: its contents differ from %s (it was "
            "edited, or made elsewhere); refusing to sign it",
            file, a.dir, copy);
        goto out;
    }
    if ((e = admindir_signing_set(ad, latest, &signing)) != KETEN_OK
        || (e = set_of(doc, &next)) != KETEN_OK) {
        goto out;
    }
    if ((e = admindir_open_signer(ad, a.key, a.admin, a.passfile, &id)) != KETEN_OK) {
        goto out;
    }
    const char *keyname = a.key != NULL ? a.key : a.admin_arg;
    if ((e = check_signer(id, keyname, &signing, &next, latest)) != KETEN_OK) {
        goto out;
    }
    e = merge_signatures(file_sd, copy_sd, &signing, &next, kept, &n_kept);
    if (e != KETEN_OK) {
        goto out;
    }
    Keten__SignedDirectory merged = KETEN__SIGNED_DIRECTORY__INIT;
    merged.directory = file_sd->directory;
    merged.n_signatures = n_kept;
    merged.signatures = kept;
    if ((e = keten_pb_pack(&merged.base, &base, &base_len)) != KETEN_OK) {
        goto out;
    }
    if (has_key(kept, n_kept, id->sign_pk)) {
        /* FILE and the copy differ when a sign was stopped between writing
         * the one and the other: then the signatures they hold together
         * are written into both, and nothing is signed again. */
        bool file_has_all = true, copy_has_all = true;
        for (size_t i = 0; i < n_kept; i++) {
            file_has_all = file_has_all
                && has_key(file_sd->signatures, file_sd->n_signatures, kept[i]->admin_pk.data);
            copy_has_all = copy_has_all
                && has_key(copy_sd->signatures, copy_sd->n_signatures, kept[i]->admin_pk.data);
        }
        bool in_file = has_key(file_sd->signatures, file_sd->n_signatures, id->sign_pk);
        char b64[KETEN_CLI_KEY_B64_BYTES];
        keten_cli_key_b64(id->sign_pk, b64);
        if (file_has_all && copy_has_all) {
            e = keten_err_set(KETEN_ERR_DUPLICATE_KEY,
                "administrator %s (%s) has already signed version %llu; a second signature by "
                "the same key counts nothing: another administrator must sign",
                keyname, b64, (unsigned long long)latest);
            goto out;
        }
        fprintf(stderr,
            "%s: note: administrator %s (%s) had signed version %llu in %s, which %s lacks (a "
            "sign was stopped before it wrote both); the signatures are now written into both\n",
            keten_cli_prog(), keyname, b64, (unsigned long long)latest, in_file ? file : copy,
            in_file ? copy : file);
        sd_bytes = base;
        sd_len = base_len;
        base = NULL;
    } else {
        e = keten_directory_sign(file_sd->directory.data, file_sd->directory.len, base, base_len,
            id->sign_sk, &sd_bytes, &sd_len);
        if (e != KETEN_OK) {
            goto out;
        }
    }
    e = KETEN_PB_UNPACK_CANONICAL(keten__signed_directory, sd_bytes, sd_len, KETEN_DIRECTORY_MAX,
        "the signed directory", &new_sd);
    if (e != KETEN_OK || (e = dirsig_count(new_sd, &signing, &next, &t)) != KETEN_OK
        || (e = judge(ad, &signing, sd_bytes, sd_len, &t, &valid)) != KETEN_OK) {
        goto out;
    }
    /* FILE first: if the copy cannot be written ADMIN stays as it was. */
    if ((e = keten_file_write(file, sd_bytes, sd_len, 0644, false)) != KETEN_OK) {
        goto out;
    }
    if (strcmp(file, copy) != 0
        && (e = keten_file_write(copy, sd_bytes, sd_len, 0644, false)) != KETEN_OK) {
        goto out;
    }
    if (a.json) {
        char hash[KETEN_CLI_HASH_HEX_BYTES];
        keten_cli_sha256_hex(sd_bytes, sd_len, hash);
        e = keten_cli_json_print(json_pack("{s:s, s:s, s:I, s:s, s:o, s:b, s:b, s:o}", "file",
            file, "copy", copy, "version", (json_int_t)latest, "sha256", hash, "signatures",
            dirsig_tally_json(&t), "valid", valid, "new_node_can_start",
            starts_from_anchor(ad, sd_bytes, sd_len), "signed_by", signer_json(ad, id)));
    } else {
        char label[ADMINNAMES_LABEL_BYTES];
        signer_label(ad, id, label);
        printf("signed version %llu of network '%s' in %s\n", (unsigned long long)latest, network,
            file);
        printf("signed by %s\n", label);
        print_status(&t, valid, starts_from_anchor(ad, sd_bytes, sd_len));
    }
out:
    keten_pb_free((ProtobufCMessage **)(void *)&file_sd);
    keten_pb_free((ProtobufCMessage **)(void *)&copy_sd);
    keten_pb_free((ProtobufCMessage **)(void *)&new_sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    free(buf);
    free(base);
    free(sd_bytes);
    keten_identity_destroy(&id);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
