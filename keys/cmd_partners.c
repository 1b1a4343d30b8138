/*
 * keten-keys partners --dir ADMIN: the partners (nodes and the broker) of
 * the draft of the next version, each with its state against the last
 * published version: active, expired, added, rotated or revoked (and, with
 * --all, the certificates superseded by a key rotation).
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

#define CMD "partners"

static const char usage_text[]
    = "Usage: keten-keys partners --dir ADMIN [--all] [--json]\n"
      "\n"
      "List the partners of the next directory version (the draft in ADMIN): id,\n"
      "role, organisation, certificate serial, valid until, and state:\n"
      "  active       as in the last published version\n"
      "  expired      as published, but its certificate has run out: rotate it\n"
      "  added        approved since the last published version (not yet published)\n"
      "  rotated      new keys approved since then (not yet published)\n"
      "  revoked      revoked; \"not yet published\" when that is still to come\n"
      "Changes nothing.\n"
      "\n"
      "Options:\n"
      "  --dir ADMIN            the administrators' folder\n"
      "  --all                  also list certificates superseded by a key rotation\n"
      "  --json                 print as JSON\n"
      "  --help                 show this help\n";

typedef struct row {
    const Keten__NodeCert *cert;
    const char *state; /* active, expired, added, rotated, revoked, superseded */
    bool published; /* this state is in the last published version */
    const char *reason; /* revocations */
} row;

static const Keten__NodeCert *published_cert(const Keten__Directory *pub, const char *id)
{
    for (size_t i = 0; pub != NULL && i < pub->n_nodes; i++) {
        if (strcmp(pub->nodes[i]->id, id) == 0) {
            return pub->nodes[i];
        }
    }
    return NULL;
}

static bool published_revocation(const Keten__Directory *pub, const Keten__Revocation *r)
{
    for (size_t i = 0; pub != NULL && i < pub->n_revocations; i++) {
        const Keten__Revocation *o = pub->revocations[i];
        if (o->cert != NULL && r->cert != NULL && o->cert->serial == r->cert->serial) {
            return true;
        }
    }
    return false;
}

/* The rows, current certificates first, in directory order. */
static keten_err make_rows(const Keten__Directory *draft, const Keten__Directory *pub, bool all,
    uint64_t now, row **out, size_t *n_out)
{
    row *rows = calloc(draft->n_nodes + draft->n_revocations + 1, sizeof *rows);
    if (rows == NULL) {
        return keten_err_set(KETEN_ERR_NOMEM, "listing partners");
    }
    size_t n = 0;
    for (size_t i = 0; i < draft->n_nodes; i++) {
        const Keten__NodeCert *c = draft->nodes[i];
        const Keten__NodeCert *old = published_cert(pub, c->id);
        row r = { .cert = c, .published = true };
        if (old == NULL) {
            r.state = "added";
            r.published = false;
        } else if (old->serial != c->serial) {
            r.state = "rotated";
            r.published = false;
        } else {
            r.state = now >= c->not_after ? "expired" : "active";
        }
        rows[n++] = r;
    }
    for (size_t i = 0; i < draft->n_revocations; i++) {
        const Keten__Revocation *rev = draft->revocations[i];
        if (rev->cert == NULL || (rev->superseded && !all)) {
            continue;
        }
        row r = { .cert = rev->cert,
            .state = rev->superseded ? "superseded" : "revoked",
            .published = published_revocation(pub, rev),
            .reason = rev->reason };
        rows[n++] = r;
    }
    *out = rows;
    *n_out = n;
    return KETEN_OK;
}

static size_t max_len(size_t a, const char *s)
{
    size_t l = strlen(s);
    return l > a ? l : a;
}

static void print_rows(const row *rows, size_t n, uint64_t draft_version, uint64_t published)
{
    size_t w_id = strlen("ID"), w_role = strlen("ROLE"), w_org = strlen("ORGANISATION");
    for (size_t i = 0; i < n; i++) {
        w_id = max_len(w_id, rows[i].cert->id);
        w_role = max_len(w_role, rows[i].cert->role);
        w_org = max_len(w_org, rows[i].cert->org);
    }
    if (published == 0) {
        printf("partners of the draft of version %llu (nothing published yet):\n",
            (unsigned long long)draft_version);
    } else {
        printf("partners of the draft of version %llu (last published: version %llu):\n",
            (unsigned long long)draft_version, (unsigned long long)published);
    }
    if (n == 0) {
        printf("(none: approve requests with keten-keys approve)\n");
        return;
    }
    printf("%-*s  %-*s  %-*s  %6s  %-24s  %s\n", (int)w_id, "ID", (int)w_role, "ROLE", (int)w_org,
        "ORGANISATION", "SERIAL", "VALID UNTIL", "STATE");
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        char until[32];
        keten_time_iso(r->cert->not_after, until, sizeof until);
        printf("%-*s  %-*s  %-*s  %6llu  %-24s  %s%s", (int)w_id, r->cert->id, (int)w_role,
            r->cert->role, (int)w_org, r->cert->org, (unsigned long long)r->cert->serial, until,
            r->state, r->published ? "" : " (not yet published)");
        if (r->reason != NULL) {
            printf(": %s", r->reason);
        }
        printf("\n");
    }
}

static json_t *rows_json(const row *rows, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++) {
        const row *r = &rows[i];
        char until[32];
        keten_time_iso(r->cert->not_after, until, sizeof until);
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:b}", "id", r->cert->id, "role",
            r->cert->role, "org", r->cert->org, "serial", (json_int_t)r->cert->serial,
            "valid_until", until, "state", r->state, "published", r->published);
        if (o != NULL && r->reason != NULL) {
            json_object_set_new(o, "reason", json_string(r->reason));
        }
        json_array_append_new(a, o);
    }
    return a;
}

int cmd_partners(int argc, char **argv)
{
    static const struct option opts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "all", no_argument, NULL, 'a' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir = NULL;
    bool json = false, all = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = keten_cli_getopt(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'a':
            all = true;
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
    row *rows = NULL;
    size_t n = 0;
    uint64_t now = keten_now_ms();
    keten_err e = admindir_open(dir, &ad);
    if (e != KETEN_OK || (e = admindir_last_published(ad, now, &p)) != KETEN_OK) {
        goto out;
    }
    const Keten__Directory *draft = keten_dirbuild_doc(ad->draft);
    if ((e = make_rows(draft, p.doc, all, now, &rows, &n)) != KETEN_OK) {
        goto out;
    }
    if (json) {
        e = keten_cli_json_print(
            json_pack("{s:I, s:I, s:o}", "draft_version", (json_int_t)draft->version,
                "last_published", (json_int_t)p.version, "partners", rows_json(rows, n)));
    } else {
        print_rows(rows, n, draft->version, p.version);
    }
out:
    free(rows);
    admindir_published_free(&p);
    admindir_close(&ad);
    return e == KETEN_OK ? KETEN_EXIT_OK : keten_cli_error(e);
}
