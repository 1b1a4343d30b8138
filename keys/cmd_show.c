/*
 * keten-keys show FILE [--anchor network.pub]: print a directory version (or
 * an anchor) and, with --anchor, whether it verifies and exactly why not.
 *
 * Verification: a version 1, or a version whose administrators and threshold
 * are still those of the anchor, is verified against the anchor. Otherwise
 * the chain v1.dir .. v<N-1>.dir must lie in the same folder as FILE (as in
 * ADMIN/published/); each step is verified from the anchor on. show checks
 * one file: it cannot know which version a node or the broker has installed,
 * so it only points out a newer v<N+1>.dir lying beside FILE (a node that has
 * it refuses FILE as a rollback).
 *
 * Test hook: the environment variable KETEN_TEST_NOW_MS (milliseconds since
 * the epoch), honoured by this command only, replaces the clock for the
 * expiry check so that tests can show an expired directory; a warning is
 * printed whenever it is in effect.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adminkey.h"
#include "cli.h"
#include "cmd.h"
#include "directory.h"
#include "dirsig.h"
#include "pb.h"
#include "render.h"
#include "util.h"

#define CMD "show"
#define TEST_NOW_ENV "KETEN_TEST_NOW_MS"
#define SIG_LABEL_MAX 128

static const char usage_text[]
    = "Usage: keten-keys show FILE [--anchor network.pub] [--json]\n"
      "\n"
      "Print a directory version: network, version, issue and expiry times,\n"
      "administrators and threshold, nodes, revocations, categories, purposes,\n"
      "rules and signatures. FILE may also be an anchor (network.pub).\n"
      "\n"
      "With --anchor, also verify it the way nodes and the broker do: against the\n"
      "anchor when it is version 1 or the administrators have not changed since\n"
      "the anchor, otherwise along the chain of earlier versions v1.dir ..\n"
      "v<N-1>.dir, which must lie in the same folder as FILE (ADMIN/published/\n"
      "holds them). Prints \"valid\" or exactly why not. show cannot know which\n"
      "version a node has installed: a newer v<N+1>.dir beside FILE is pointed out.\n"
      "\n"
      "Options:\n"
      "  --anchor FILE          verify against this trust anchor (network.pub)\n"
      "  --json                 print as JSON\n"
      "  --help                 show this help\n"
      "\n"
      "Exit codes: 0 printed (and valid), 1 failure (e.g. unreadable file, chain\n"
      "missing), 2 usage error, 3 verification failed.\n";

typedef struct verdict {
    bool checked; /* --anchor given and a verification ran */
    const char *method; /* "anchor" or "chain" */
    keten_err err; /* KETEN_OK: valid */
    char detail[768]; /* why not */
    bool have_signing; /* signing set known (for the per-signature labels) */
    adminset signing; /* administrators who had to sign */
    char signing_name[64]; /* whose they are: "the anchor", "version 3" */
    uint64_t newer; /* a newer version lying beside FILE, or 0 */
    char newer_path[PATH_MAX];
} verdict;

static keten_err chain_broken(verdict *v, keten_err e, const char *path)
{
    v->err = e;
    /* The detail may be cut short by the buffer; it stays readable. */
    int n = snprintf(v->detail, sizeof v->detail, "the chain breaks at ");
    if (n > 0 && (size_t)n < sizeof v->detail) {
        size_t used = (size_t)n;
        const char *parts[] = { path, ": ", keten_strerror(e), ": ", keten_err_detail() };
        for (size_t i = 0; i < sizeof parts / sizeof parts[0] && used + 1 < sizeof v->detail; i++) {
            size_t room = sizeof v->detail - used - 1;
            size_t l = strlen(parts[i]);
            l = l < room ? l : room;
            memcpy(v->detail + used, parts[i], l);
            used += l;
        }
        v->detail[used] = '\0';
    }
    return e;
}

static keten_err note(verdict *v, keten_err e)
{
    v->err = e;
    snprintf(v->detail, sizeof v->detail, "%s", keten_err_detail());
    return e;
}

static uint64_t clock_now(void)
{
    const char *s = getenv(TEST_NOW_ENV);
    uint64_t t = 0;
    if (s != NULL && s[0] != '\0') {
        if (keten_cli_parse_uint(s, 1, UINT64_MAX, &t)) {
            char iso[32];
            keten_time_iso(t, iso, sizeof iso);
            keten_cli_warn(
                "%s is set: checking validity as of %s (for tests only)", TEST_NOW_ENV, iso);
            return t;
        }
        keten_cli_warn("%s='%s' is not a number of milliseconds; using the clock", TEST_NOW_ENV, s);
    }
    return keten_now_ms();
}

static keten_err chain_file(const char *folder, uint64_t version, char out[static PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/v%llu.dir", folder, (unsigned long long)version);
    if (n < 0 || n >= PATH_MAX) {
        return keten_err_set(KETEN_ERR_INVALID, "path in %s is too long", folder);
    }
    return KETEN_OK;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Verify FILE along v1.dir .. v<N-1>.dir in folder, from the anchor on. */
static keten_err verify_chain(const Keten__Anchor *anchor, const char *folder, uint64_t n,
    const uint8_t *buf, size_t len, uint64_t now, verdict *v)
{
    char path[PATH_MAX];
    keten_directory *prev = NULL, *cur = NULL;
    keten_err e = KETEN_OK;
    v->method = "chain";
    for (uint64_t i = 1; i < n; i++) {
        if ((e = chain_file(folder, i, path)) != KETEN_OK) {
            return note(v, e);
        }
        if (!is_file(path)) {
            e = keten_err_set(KETEN_ERR_NOT_FOUND,
                "cannot verify version %llu without the chain: its administrators differ from "
                "the anchor's, and %s is missing; put v1.dir .. v%llu.dir (ADMIN/published/ "
                "has them) beside the file",
                (unsigned long long)n, path, (unsigned long long)(n - 1));
            return note(v, e);
        }
    }
    for (uint64_t i = 1; i < n && e == KETEN_OK; i++) {
        uint8_t *b = NULL;
        size_t l = 0;
        if ((e = chain_file(folder, i, path)) != KETEN_OK
            || (e = keten_file_read(path, KETEN_DIRECTORY_MAX, &b, &l)) != KETEN_OK) {
            note(v, e);
            break;
        }
        e = keten_directory_verify(i == 1 ? anchor : NULL, prev, b, l, 0, &cur);
        free(b);
        if (e != KETEN_OK) {
            chain_broken(v, e, path);
            break;
        }
        keten_directory_destroy(&prev);
        prev = cur;
        cur = NULL;
    }
    if (e == KETEN_OK) {
        const Keten__Directory *pd = keten_directory_doc(prev);
        if (adminset_from_pb(pd->admins, pd->n_admins, pd->threshold, &v->signing) == KETEN_OK) {
            v->have_signing = true;
            snprintf(v->signing_name, sizeof v->signing_name, "version %llu",
                (unsigned long long)pd->version);
        }
        e = keten_directory_verify(NULL, prev, buf, len, now, &cur);
        if (e != KETEN_OK) {
            note(v, e);
        }
    }
    keten_directory_destroy(&prev);
    keten_directory_destroy(&cur);
    v->err = e;
    return e;
}

static void find_newer(const char *folder, const Keten__Directory *doc, verdict *v)
{
    char path[PATH_MAX];
    uint8_t *b = NULL;
    size_t l = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *d = NULL;
    if (chain_file(folder, doc->version + 1, path) != KETEN_OK || !is_file(path)
        || keten_file_read(path, KETEN_DIRECTORY_MAX, &b, &l) != KETEN_OK) {
        goto out;
    }
    if (KETEN_PB_UNPACK(keten__signed_directory, b, l, KETEN_DIRECTORY_MAX, path, &sd) == KETEN_OK
        && KETEN_PB_UNPACK(keten__directory, sd->directory.data, sd->directory.len,
               KETEN_DIRECTORY_MAX, path, &d)
            == KETEN_OK
        && d->version == doc->version + 1 && strcmp(d->network, doc->network) == 0) {
        v->newer = d->version;
        snprintf(v->newer_path, sizeof v->newer_path, "%s", path);
    }
out:
    free(b);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&d);
}

static void verify(const char *file, const Keten__Anchor *anchor, const uint8_t *buf, size_t len,
    const Keten__Directory *doc, verdict *v)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", file);
    const char *folder = dirname(copy);
    uint64_t now = clock_now();
    adminset own, anchor_set;
    v->checked = true;
    v->method = "anchor";
    if (strcmp(doc->network, anchor->network) != 0) {
        v->err = keten_err_set(KETEN_ERR_WRONG_NETWORK,
            "%s is a directory of network '%s', but the anchor is for network '%s'; use that "
            "network's network.pub",
            file, doc->network, anchor->network);
        note(v, v->err);
        return;
    }
    bool same_admins
        = adminset_from_pb(doc->admins, doc->n_admins, doc->threshold, &own) == KETEN_OK
        && adminset_from_pb(anchor->admins, anchor->n_admins, anchor->threshold, &anchor_set)
            == KETEN_OK
        && adminset_equal(&own, &anchor_set);
    if (doc->version <= 1 || same_admins) {
        keten_directory *d = NULL;
        if (adminset_from_pb(anchor->admins, anchor->n_admins, anchor->threshold, &v->signing)
            == KETEN_OK) {
            v->have_signing = true;
            snprintf(v->signing_name, sizeof v->signing_name, "the anchor");
        }
        v->err = keten_directory_verify(anchor, NULL, buf, len, now, &d);
        keten_directory_destroy(&d);
        if (v->err != KETEN_OK) {
            note(v, v->err);
        }
    } else {
        (void)verify_chain(anchor, folder, doc->version, buf, len, now, v);
    }
    find_newer(folder, doc, v);
}

/* ---- printing ------------------------------------------------------------ */

static const char *sig_status(const Keten__DirectorySignature *sig, size_t index,
    const Keten__SignedDirectory *sd, const uint8_t *msg, size_t msg_len, const adminset *own,
    const verdict *v, char *buf, size_t size)
{
    if (sig->admin_pk.len != KETEN_SIGN_PK_BYTES || sig->signature.len != KETEN_SIG_BYTES) {
        return "malformed";
    }
    for (size_t j = 0; j < index; j++) {
        const ProtobufCBinaryData *k = &sd->signatures[j]->admin_pk;
        if (k->len == KETEN_SIGN_PK_BYTES
            && sodium_memcmp(k->data, sig->admin_pk.data, KETEN_SIGN_PK_BYTES) == 0) {
            return "repeated: the same key again, counts once";
        }
    }
    if (!dirsig_verifies(msg, msg_len, sig)) {
        return "does not verify: the document was changed after it was signed, or the "
               "signature is damaged";
    }
    bool in_own = adminset_find(own, sig->admin_pk.data) >= 0;
    if (v->have_signing) {
        bool in_signing = adminset_find(&v->signing, sig->admin_pk.data) >= 0;
        if (in_signing) {
            snprintf(buf, size, "valid, by an administrator of %s", v->signing_name);
            return buf;
        }
        if (in_own && !adminset_equal(&v->signing, own)) {
            return "valid, by a new administrator";
        }
        return "valid signature, but not by an administrator: counts nothing";
    }
    return in_own ? "valid, by an administrator listed in this version"
                  : "valid signature, but not by an administrator listed here: counts nothing";
}

static void print_time(const char *label, uint64_t ms)
{
    char iso[32];
    keten_time_iso(ms, iso, sizeof iso);
    printf("%s%s\n", label, iso);
}

static void print_list(const char *label, char *const *v, size_t n)
{
    printf("%s", label);
    if (n == 0) {
        printf(" (none)");
    }
    for (size_t i = 0; i < n; i++) {
        printf(" %s", v[i]);
    }
    printf("\n");
}

static void print_key(const char *prefix, const ProtobufCBinaryData *k)
{
    char b64[KETEN_CLI_KEY_B64_BYTES];
    if (k->len == KETEN_SIGN_PK_BYTES) {
        keten_cli_key_b64(k->data, b64);
        printf("%s%s\n", prefix, b64);
    } else {
        printf("%s(invalid key of %zu bytes)\n", prefix, k->len);
    }
}

static void print_cert(const Keten__NodeCert *c)
{
    char nb[32], na[32];
    keten_time_iso(c->not_before, nb, sizeof nb);
    keten_time_iso(c->not_after, na, sizeof na);
    printf("  %s: role %s, org \"%s\", serial %llu, valid %s to %s\n", c->id, c->role, c->org,
        (unsigned long long)c->serial, nb, na);
}

static void print_text(const char *file, const uint8_t *buf, size_t len,
    const Keten__SignedDirectory *sd, const Keten__Directory *doc, const char *const *status,
    const dirsig_tally *t, const verdict *v, const char *anchor_path)
{
    char hash[KETEN_CLI_HASH_HEX_BYTES], dhash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(buf, len, hash);
    keten_cli_sha256_hex(sd->directory.data, sd->directory.len, dhash);
    printf("file:        %s (sha256 %s)\n", file, hash);
    printf("network:     %s\n", doc->network);
    printf("version:     %llu\n", (unsigned long long)doc->version);
    print_time("issued:      ", doc->issued_at);
    print_time("expires:     ", doc->expires_at);
    printf("hash:        %s (SHA-256 of the directory, as named in checkpoints)\n", dhash);
    if (doc->previous_hash.len > 0) {
        char ph[2 * KETEN_HASH_BYTES + 1];
        if (doc->previous_hash.len == KETEN_HASH_BYTES) {
            keten_hex(doc->previous_hash.data, KETEN_HASH_BYTES, ph);
        } else {
            snprintf(ph, sizeof ph, "(invalid)");
        }
        printf("previous:    %s\n", ph);
    }
    printf("administrators (threshold %u of %zu):\n", (unsigned)doc->threshold, doc->n_admins);
    for (size_t i = 0; i < doc->n_admins; i++) {
        print_key("  ", &doc->admins[i]);
    }
    printf("nodes (%zu):\n", doc->n_nodes);
    for (size_t i = 0; i < doc->n_nodes; i++) {
        print_cert(doc->nodes[i]);
    }
    printf("revocations (%zu):\n", doc->n_revocations);
    for (size_t i = 0; i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        char at[32];
        keten_time_iso(r->at, at, sizeof at);
        printf("  %s: serial %llu, %s at %s: %s\n", r->cert != NULL ? r->cert->id : "?",
            r->cert != NULL ? (unsigned long long)r->cert->serial : 0ull,
            r->superseded ? "superseded (key rotation)" : "revoked", at, r->reason);
    }
    print_list("categories:", doc->categories, doc->n_categories);
    print_list("purposes:  ", doc->purposes, doc->n_purposes);
    printf("rules (%zu; deny wins, default deny):\n", doc->n_rules);
    for (size_t i = 0; i < doc->n_rules; i++) {
        printf("  ");
        render_rule_text(stdout, doc->rules[i]);
    }
    printf("signatures (%zu):\n", sd->n_signatures);
    for (size_t i = 0; i < sd->n_signatures; i++) {
        char b64[KETEN_CLI_KEY_B64_BYTES] = "(invalid key)";
        if (sd->signatures[i]->admin_pk.len == KETEN_SIGN_PK_BYTES) {
            keten_cli_key_b64(sd->signatures[i]->admin_pk.data, b64);
        }
        printf("  %s: %s\n", b64, status[i]);
    }
    char text[512];
    dirsig_tally_text(t, text, sizeof text);
    printf("%s\n", text);
    if (!v->checked) {
        printf("not verified: give --anchor network.pub to check it\n");
        return;
    }
    if (v->err == KETEN_OK) {
        printf("verification against %s (%s): valid\n", anchor_path,
            strcmp(v->method, "chain") == 0 ? "along the chain of earlier versions" : "the anchor");
    } else {
        printf("verification against %s: NOT VALID: %s: %s\n", anchor_path, keten_strerror(v->err),
            v->detail);
    }
    if (v->newer != 0) {
        printf("note: version %llu lies beside it (%s): a node or broker that has installed a "
               "newer version refuses this one as a rollback; show cannot know what they "
               "installed\n",
            (unsigned long long)v->newer, v->newer_path);
    }
}

static json_t *doc_json(const char *file, const uint8_t *buf, size_t len,
    const Keten__SignedDirectory *sd, const Keten__Directory *doc, const char *const *status,
    const dirsig_tally *t, const verdict *v, const char *anchor_path)
{
    char hash[KETEN_CLI_HASH_HEX_BYTES], dhash[KETEN_CLI_HASH_HEX_BYTES];
    char issued[32], expires[32];
    keten_cli_sha256_hex(buf, len, hash);
    keten_cli_sha256_hex(sd->directory.data, sd->directory.len, dhash);
    keten_time_iso(doc->issued_at, issued, sizeof issued);
    keten_time_iso(doc->expires_at, expires, sizeof expires);
    json_t *admins = json_array(), *nodes = json_array(), *revs = json_array();
    json_t *rules = json_array(), *sigs = json_array();
    for (size_t i = 0; admins != NULL && i < doc->n_admins; i++) {
        json_array_append_new(admins, render_key_json(&doc->admins[i]));
    }
    for (size_t i = 0; nodes != NULL && i < doc->n_nodes; i++) {
        json_array_append_new(nodes, render_cert_json(doc->nodes[i]));
    }
    for (size_t i = 0; revs != NULL && i < doc->n_revocations; i++) {
        const Keten__Revocation *r = doc->revocations[i];
        char at[32];
        keten_time_iso(r->at, at, sizeof at);
        json_array_append_new(revs,
            json_pack("{s:o, s:s, s:s, s:b}", "cert",
                r->cert != NULL ? render_cert_json(r->cert) : json_null(), "at", at, "reason",
                r->reason, "superseded", r->superseded));
    }
    for (size_t i = 0; rules != NULL && i < doc->n_rules; i++) {
        json_array_append_new(rules, render_rule_json(doc->rules[i]));
    }
    for (size_t i = 0; sigs != NULL && i < sd->n_signatures; i++) {
        json_array_append_new(sigs,
            json_pack("{s:o, s:s}", "admin_pk", render_key_json(&sd->signatures[i]->admin_pk),
                "status", status[i]));
    }
    json_t *ver;
    if (!v->checked) {
        ver = json_pack("{s:b}", "checked", false);
    } else {
        ver = json_pack("{s:b, s:s, s:s, s:b}", "checked", true, "anchor", anchor_path, "method",
            v->method, "valid", v->err == KETEN_OK);
        if (ver != NULL && v->err != KETEN_OK) {
            json_object_set_new(ver, "error", json_string(keten_strerror(v->err)));
            json_object_set_new(ver, "detail", json_string(v->detail));
        }
        if (ver != NULL && v->newer != 0) {
            json_object_set_new(ver, "newer_version", json_integer((json_int_t)v->newer));
            json_object_set_new(ver, "newer_file", json_string(v->newer_path));
        }
    }
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:o, "
                            "s:o, s:o, s:o, s:o, s:o, s:o}",
        "file", file, "type", "directory", "sha256", hash, "network", doc->network, "version",
        (json_int_t)doc->version, "issued_at", issued, "expires_at", expires, "directory_hash",
        dhash, "admins", admins, "threshold", (json_int_t)doc->threshold, "witness_quorum",
        (json_int_t)doc->witness_quorum, "nodes", nodes, "revocations", revs, "categories",
        render_strings_json(doc->categories, doc->n_categories), "purposes",
        render_strings_json(doc->purposes, doc->n_purposes), "rules", rules, "signatures", sigs,
        "signature_count", dirsig_tally_json(t), "verification", ver);
    return obj;
}

/* ---- anchors ------------------------------------------------------------- */

static int show_anchor(const char *file, const uint8_t *buf, size_t len, const Keten__Anchor *a,
    bool json, const char *anchor_path)
{
    char hash[KETEN_CLI_HASH_HEX_BYTES];
    keten_cli_sha256_hex(buf, len, hash);
    if (anchor_path != NULL) {
        keten_cli_warn("%s is an anchor, not a directory: --anchor is ignored", file);
    }
    if (json) {
        json_t *admins = json_array();
        for (size_t i = 0; admins != NULL && i < a->n_admins; i++) {
            json_array_append_new(admins, render_key_json(&a->admins[i]));
        }
        keten_err e = keten_cli_json_print(json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "file", file,
            "type", "anchor", "sha256", hash, "network", a->network, "admins", admins, "threshold",
            (json_int_t)a->threshold));
        return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
    }
    printf("file:        %s (sha256 %s)\n", file, hash);
    printf("anchor of network '%s': %u of %zu administrator signatures needed\n", a->network,
        (unsigned)a->threshold, a->n_admins);
    for (size_t i = 0; i < a->n_admins; i++) {
        print_key("  ", &a->admins[i]);
    }
    return KETEN_EXIT_OK;
}

/* ---- the command --------------------------------------------------------- */

int cmd_show(int argc, char **argv)
{
    static const struct option opts[] = {
        { "anchor", required_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *anchor_path = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            anchor_path = optarg;
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
    if (optind >= argc) {
        return keten_cli_usage(CMD, "give the directory FILE to show");
    }
    if (argc - optind > 1) {
        return keten_cli_usage(CMD, "unexpected argument '%s'", argv[optind + 1]);
    }
    const char *file = argv[optind];

    uint8_t *buf = NULL, *msg = NULL;
    size_t len = 0, msg_len = 0;
    Keten__SignedDirectory *sd = NULL;
    Keten__Directory *doc = NULL;
    Keten__Anchor *anchor = NULL, *as_anchor = NULL;
    const char **status = NULL;
    char *labels = NULL;
    verdict v;
    memset(&v, 0, sizeof v);
    int rc = KETEN_EXIT_OK;
    keten_err e = keten_file_read(file, KETEN_DIRECTORY_MAX, &buf, &len);
    if (e != KETEN_OK) {
        goto out;
    }
    if (anchor_path != NULL && (e = keten_anchor_load(anchor_path, &anchor)) != KETEN_OK) {
        goto out;
    }
    e = KETEN_PB_UNPACK_CANONICAL(
        keten__signed_directory, buf, len, KETEN_DIRECTORY_MAX, file, &sd);
    if (e == KETEN_OK) {
        e = KETEN_PB_UNPACK_CANONICAL(keten__directory, sd->directory.data, sd->directory.len,
            KETEN_DIRECTORY_MAX, file, &doc);
    }
    if (e != KETEN_OK) {
        keten_err parse_err = e;
        char parse_detail[512];
        snprintf(parse_detail, sizeof parse_detail, "%s", keten_err_detail());
        if (keten_anchor_parse(buf, len, &as_anchor) == KETEN_OK) {
            rc = show_anchor(file, buf, len, as_anchor, json, anchor_path);
            e = KETEN_OK;
            goto out;
        }
        e = keten_err_set(parse_err,
            "%s is neither a directory nor an anchor file, or it was damaged (%s)", file,
            parse_detail);
        if (anchor != NULL) {
            /* Asked whether it is valid: a file that does not parse is not. */
            keten_cli_error(e);
            rc = KETEN_EXIT_VERIFY;
            e = KETEN_OK;
        }
        goto out;
    }

    if (anchor != NULL) {
        verify(file, anchor, buf, len, doc, &v);
    }
    adminset own;
    memset(&own, 0, sizeof own);
    if ((e = adminset_from_pb(doc->admins, doc->n_admins, doc->threshold, &own)) != KETEN_OK) {
        /* Printed anyway; verification (if asked) reports the problem. */
        keten_err_clear();
        e = KETEN_OK;
    }
    if ((e = dirsig_message(&sd->directory, &msg, &msg_len)) != KETEN_OK) {
        goto out;
    }
    status = calloc(sd->n_signatures + 1, sizeof *status);
    labels = calloc(sd->n_signatures + 1, SIG_LABEL_MAX);
    if (status == NULL || labels == NULL) {
        e = keten_err_set(KETEN_ERR_NOMEM, "showing %s", file);
        goto out;
    }
    for (size_t i = 0; i < sd->n_signatures; i++) {
        status[i] = sig_status(sd->signatures[i], i, sd, msg, msg_len, &own, &v,
            labels + i * SIG_LABEL_MAX, SIG_LABEL_MAX);
    }
    dirsig_tally t;
    if ((e = dirsig_count(sd, v.have_signing ? &v.signing : &own, &own, &t)) != KETEN_OK) {
        goto out;
    }
    if (json) {
        e = keten_cli_json_print(doc_json(file, buf, len, sd, doc, status, &t, &v, anchor_path));
        if (e != KETEN_OK) {
            goto out;
        }
    } else {
        print_text(file, buf, len, sd, doc, status, &t, &v, anchor_path);
    }
    if (v.checked && v.err != KETEN_OK) {
        fprintf(stderr, "%s: %s: %s\n", keten_cli_prog(), keten_strerror(v.err), v.detail);
        /* A chain that is not there could not be checked: that is not a
         * verification failure of the file itself. */
        rc = v.err == KETEN_ERR_NOT_FOUND ? KETEN_EXIT_FAILURE : KETEN_EXIT_VERIFY;
    }
out:
    free(status);
    free(labels);
    free(msg);
    free(buf);
    keten_pb_free((ProtobufCMessage **)(void *)&sd);
    keten_pb_free((ProtobufCMessage **)(void *)&doc);
    keten_pb_free((ProtobufCMessage **)(void *)&anchor);
    keten_pb_free((ProtobufCMessage **)(void *)&as_anchor);
    return e == KETEN_OK ? rc : keten_cli_error(e);
}
