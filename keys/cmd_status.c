/*
 * keten-keys status --dir ADMIN: what the next publish would change, and
 * where the last published version stands. The draft (ADMIN/state) is
 * compared with ADMIN/published/v<N-1>.dir (keten_dirbuild_changes): partners
 * added, rotated and revoked, rules, registered values, administrators and
 * threshold; then the last version's signatures, whether it is valid, and
 * what to do next.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "admindir.h"
#include "adminnames.h"
#include "cli.h"
#include "cmd.h"
#include "render.h"
#include "util.h"

#define CMD "status"

static const char usage_text[]
    = "Usage: keten-keys status --dir ADMIN [--json]\n"
      "\n"
      "Say what the next publish would change: the draft of the next directory\n"
      "version in ADMIN compared with the last published version, as partners\n"
      "added, rotated and revoked, policy rules added and removed, categories and\n"
      "purposes added and removed, administrators added and removed and the\n"
      "threshold. Also says how the last published version stands: its\n"
      "signatures and who made them, whether nodes and the broker accept it, when\n"
      "it expires, and what to do next. Changes nothing.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --json                 print as JSON\n"
      "  --help                 show this help\n";

/* ---- text ---------------------------------------------------------------- */

static void print_signers(const admindir_published *p, const adminnames *names)
{
    uint8_t *msg = NULL;
    size_t len = 0;
    if (dirsig_message(&p->sd->directory, &msg, &len) != KETEN_OK) {
        keten_err_clear();
        return;
    }
    for (size_t i = 0; i < p->sd->n_signatures; i++) {
        const Keten__DirectorySignature *sig = p->sd->signatures[i];
        if (sig->admin_pk.len == KETEN_SIGN_PK_BYTES && dirsig_verifies(msg, len, sig)) {
            char label[ADMINNAMES_LABEL_BYTES];
            adminnames_label(names, sig->admin_pk.data, label);
            printf("  signed by %s\n", label);
        }
    }
    free(msg);
}

static void print_published(
    const admindir *ad, const admindir_published *p, const adminnames *names)
{
    if (p->version == 0) {
        printf("nothing published yet\n");
        return;
    }
    char expires[32], tally[512];
    keten_time_iso(p->doc->expires_at, expires, sizeof expires);
    dirsig_tally_text(&p->tally, tally, sizeof tally);
    printf("last published: version %llu (%s), %s %s\n", (unsigned long long)p->version, p->file,
        p->expired ? "expired" : "expires", expires);
    printf("  %s\n", tally);
    print_signers(p, names);
    if (p->valid) {
        printf("  valid: nodes and the broker accept it\n");
    } else if (p->expired) {
        printf("  not valid: it has expired\n");
    } else {
        printf("  not yet valid: it needs more signatures\n");
    }
    (void)ad;
}

static void print_names(const char *title, const char *const *v, size_t n)
{
    if (n == 0) {
        return;
    }
    printf("  %s:", title);
    for (size_t i = 0; i < n; i++) {
        printf(" %s", v[i]);
    }
    printf("\n");
}

static void print_admins(
    const char *title, const ProtobufCBinaryData *const *v, size_t n, const adminnames *names)
{
    if (n == 0) {
        return;
    }
    printf("  %s (%zu):\n", title, n);
    for (size_t i = 0; i < n; i++) {
        char label[ADMINNAMES_LABEL_BYTES] = "(invalid key)";
        if (v[i]->len == KETEN_SIGN_PK_BYTES) {
            adminnames_label(names, v[i]->data, label);
        }
        printf("    %s\n", label);
    }
}

static void print_rules(const char *title, const Keten__PolicyRule *const *v, size_t n)
{
    if (n == 0) {
        return;
    }
    printf("  %s (%zu):\n", title, n);
    for (size_t i = 0; i < n; i++) {
        printf("    ");
        render_rule_text(stdout, v[i]);
    }
}

static void print_changes(const keten_dirbuild_changes *d, uint64_t draft_version,
    uint64_t published, const adminnames *names)
{
    if (published == 0) {
        printf("draft of version %llu (the first), it holds:\n", (unsigned long long)draft_version);
    } else if (!d->changed) {
        printf("draft of version %llu: no changes since version %llu\n",
            (unsigned long long)draft_version, (unsigned long long)published);
        return;
    } else {
        printf("draft of version %llu, changes since version %llu:\n",
            (unsigned long long)draft_version, (unsigned long long)published);
    }
    if (d->n_added > 0) {
        printf("  partners added (%zu):\n", d->n_added);
        for (size_t i = 0; i < d->n_added; i++) {
            const Keten__NodeCert *c = d->added[i];
            printf("    %s: role %s, org \"%s\", serial %llu\n", c->id, c->role, c->org,
                (unsigned long long)c->serial);
        }
    }
    if (d->n_rotated > 0) {
        printf("  partners rotated, new keys (%zu):\n", d->n_rotated);
        for (size_t i = 0; i < d->n_rotated; i++) {
            printf("    %s: serial %llu replaces serial %llu\n", d->rotated_new[i]->id,
                (unsigned long long)d->rotated_new[i]->serial,
                (unsigned long long)d->rotated_old[i]->serial);
        }
    }
    if (d->n_revoked > 0) {
        printf("  partners revoked (%zu):\n", d->n_revoked);
        for (size_t i = 0; i < d->n_revoked; i++) {
            const Keten__Revocation *r = d->revoked[i];
            printf("    %s: serial %llu: %s\n", r->cert != NULL ? r->cert->id : "?",
                r->cert != NULL ? (unsigned long long)r->cert->serial : 0ull, r->reason);
        }
    }
    print_rules("rules added", d->rules_added, d->n_rules_added);
    print_rules("rules removed", d->rules_removed, d->n_rules_removed);
    print_names("categories added", d->categories_added, d->n_categories_added);
    print_names("categories removed", d->categories_removed, d->n_categories_removed);
    print_names("purposes added", d->purposes_added, d->n_purposes_added);
    print_names("purposes removed", d->purposes_removed, d->n_purposes_removed);
    print_admins(published == 0 ? "administrators" : "administrators added", d->admins_added,
        d->n_admins_added, names);
    print_admins("administrators removed", d->admins_removed, d->n_admins_removed, names);
    if (published == 0) {
        printf("  threshold: %u\n", (unsigned)d->threshold_to);
    } else if (d->threshold_from != d->threshold_to) {
        printf("  threshold: %u -> %u\n", (unsigned)d->threshold_from, (unsigned)d->threshold_to);
    }
    if (d->other) {
        printf("  other settings of the directory differ\n");
    }
}

/* What the administrators do next, in one line. */
static void next_step(const admindir *ad, const admindir_published *p,
    const keten_dirbuild_changes *d, char *out, size_t size)
{
    if (p->version > 0 && !p->tally.enough && !p->expired) {
        snprintf(out, size,
            "another administrator signs version %llu: keten-keys sign --dir %s %s --key "
            "THEIR-KEY",
            (unsigned long long)p->version, ad->path, p->file);
    } else if (p->version > 0 && !p->tally.enough) {
        snprintf(out, size,
            "version %llu expired before it had its signatures: publish version %llu in its "
            "place with keten-keys publish --dir %s --out FILE --key KEY --force",
            (unsigned long long)p->version, (unsigned long long)(p->version + 1), ad->path);
    } else if (d->changed) {
        snprintf(out, size,
            "publish version %llu: keten-keys publish --dir %s --out FILE --key KEY",
            (unsigned long long)(p->version + 1), ad->path);
    } else {
        snprintf(out, size,
            "nothing to publish; before version %llu expires, renew it with keten-keys publish "
            "--dir %s --out FILE --key KEY --refresh",
            (unsigned long long)p->version, ad->path);
    }
}

/* ---- JSON ---------------------------------------------------------------- */

static json_t *strings_json(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, json_string(v[i]));
    }
    return a;
}

static json_t *rules_json(const Keten__PolicyRule *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, render_rule_json(v[i]));
    }
    return a;
}

static json_t *admins_json(const ProtobufCBinaryData *const *v, size_t n, const adminnames *names)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, render_admin_json(names, v[i]));
    }
    return a;
}

static json_t *changes_json(const keten_dirbuild_changes *d, const adminnames *names)
{
    json_t *added = json_array(), *rotated = json_array(), *revoked = json_array();
    for (size_t i = 0; added != NULL && i < d->n_added; i++) {
        json_array_append_new(added, render_cert_json(d->added[i]));
    }
    for (size_t i = 0; rotated != NULL && i < d->n_rotated; i++) {
        json_array_append_new(rotated,
            json_pack("{s:s, s:I, s:I, s:o}", "id", d->rotated_new[i]->id, "old_serial",
                (json_int_t)d->rotated_old[i]->serial, "new_serial",
                (json_int_t)d->rotated_new[i]->serial, "cert",
                render_cert_json(d->rotated_new[i])));
    }
    for (size_t i = 0; revoked != NULL && i < d->n_revoked; i++) {
        const Keten__Revocation *r = d->revoked[i];
        char at[32];
        keten_time_iso(r->at, at, sizeof at);
        json_array_append_new(revoked,
            json_pack("{s:s, s:I, s:s, s:s}", "id", r->cert != NULL ? r->cert->id : "", "serial",
                (json_int_t)(r->cert != NULL ? r->cert->serial : 0), "reason", r->reason, "at",
                at));
    }
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I}, "
                     "s:b}",
        "partners_added", added, "partners_rotated", rotated, "partners_revoked", revoked,
        "rules_added", rules_json(d->rules_added, d->n_rules_added), "rules_removed",
        rules_json(d->rules_removed, d->n_rules_removed), "categories_added",
        strings_json(d->categories_added, d->n_categories_added), "categories_removed",
        strings_json(d->categories_removed, d->n_categories_removed), "purposes_added",
        strings_json(d->purposes_added, d->n_purposes_added), "purposes_removed",
        strings_json(d->purposes_removed, d->n_purposes_removed), "admins_added",
        admins_json(d->admins_added, d->n_admins_added, names), "admins_removed",
        admins_json(d->admins_removed, d->n_admins_removed, names), "threshold", "from",
        (json_int_t)d->threshold_from, "to", (json_int_t)d->threshold_to, "other", d->other);
}

static json_t *published_json(const admindir_published *p, const adminnames *names)
{
    if (p->version == 0) {
        return json_null();
    }
    char expires[32];
    keten_time_iso(p->doc->expires_at, expires, sizeof expires);
    json_t *signers = json_array();
    uint8_t *msg = NULL;
    size_t len = 0;
    if (signers != NULL && dirsig_message(&p->sd->directory, &msg, &len) == KETEN_OK) {
        for (size_t i = 0; i < p->sd->n_signatures; i++) {
            const Keten__DirectorySignature *sig = p->sd->signatures[i];
            if (sig->admin_pk.len == KETEN_SIGN_PK_BYTES && dirsig_verifies(msg, len, sig)) {
                json_array_append_new(signers, render_admin_json(names, &sig->admin_pk));
            }
        }
    }
    free(msg);
    return json_pack("{s:I, s:s, s:s, s:b, s:b, s:o, s:o}", "version", (json_int_t)p->version,
        "file", p->file, "expires_at", expires, "expired", p->expired, "valid", p->valid,
        "signatures", dirsig_tally_json(&p->tally), "signed_by", signers);
}

/* ---- the command --------------------------------------------------------- */

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL;
    bool json = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
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

    admindir *ad = NULL;
    admindir_published p;
    memset(&p, 0, sizeof p);
    adminnames *names = NULL;
    keten_dirbuild_changes *d = NULL;
    keten_err e = admindir_open(dir, &ad);
    if (e != KETEN_OK || (e = admindir_last_published(ad, keten_now_ms(), &p)) != KETEN_OK
        || (e = admindir_load_names(ad, &names)) != KETEN_OK
        || (e = keten_dirbuild_diff(p.doc, keten_dirbuild_doc(ad->draft), &d)) != KETEN_OK) {
        goto out;
    }
    const Keten__Directory *draft = keten_dirbuild_doc(ad->draft);
    char next[2 * PATH_MAX + 512];
    next_step(ad, &p, d, next, sizeof next);
    if (json) {
        e = keten_cli_json_print(json_pack("{s:s, s:s, s:I, s:o, s:b, s:o, s:s}", "dir", ad->path,
            "network", draft->network, "draft_version", (json_int_t)draft->version,
            "last_published", published_json(&p, names), "changed", d->changed, "changes",
            changes_json(d, names), "next", next));
    } else {
        printf("ADMIN %s, network '%s'\n", ad->path, draft->network);
        print_published(ad, &p, names);
        print_changes(d, draft->version, p.version, names);
        printf("next: %s\n", next);
    }
out:
    keten_dirbuild_changes_destroy(&d);
    adminnames_destroy(&names);
    admindir_published_free(&p);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
